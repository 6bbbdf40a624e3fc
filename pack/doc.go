// Package pack defines the layout of a bale bootstrap pack and the JSON
// files inside it: the pack index, the OCI image layout's index.json and
// oci-layout, and the docker-save manifest.json. The executor writes them
// with these types and encoders and `bale verify` reads them back, so both
// sides agree on every byte.
//
// # Pack layout
//
// A bootstrap pack NAME.tar is a gzip-compressed tar (see DESIGN.md for the
// header rules) holding, sorted by path with every parent directory listed:
//
//	charts/CHART-VERSION.tgz        each chart, re-archived by bale
//	charts/CHART-VERSION.values-airgap.yaml
//	                                its values file, when the spec gives one
//	images/oci-layout               {"imageLayoutVersion": "1.0.0"}
//	images/index.json               OCI index of every image (see below)
//	images/manifest.json            docker-save list of the same images
//	images/blobs/sha256/HEX         every index, manifest, config and layer, once
//	signatures/NAME                 DSSE/TUF metadata, bytes unchanged
//	pack-index.json                 the pack index (see below)
//
// Beside it, NAME.tar.sha256 holds "HEX  NAME.tar\n", so `sha256sum -c`
// checks it.
//
// # Gzip members
//
// The tar stream is exactly what archive.WriteTar writes; its gzip framing
// is a fixed sequence of members (archive.WriteMembers, layout
// "bale-members/2"):
//
//	members       for each tar entry, in archive order, its segment (its
//	              header block(s), a PAX header first when USTAR cannot
//	              hold the entry, its body and the zero padding to 512
//	              bytes) cut into members of archive.MemberChunk (1 MiB)
//	              uncompressed bytes, the last holding the rest; each
//	              chunk is compressed on its own, in one piece
//	last member   the end-of-archive marker: 1024 zero bytes, nothing after
//
// Every member has the same gzip header: mtime the build timestamp, OS byte
// 255, no name or comment, and one extra subfield "BL" whose text is
// "bale-members/2 level=L COMPRESSOR" (L the target's gzip level 0..9,
// COMPRESSOR archive.Compressor). RFC 1952 makes concatenated members one
// stream, so gzip, GNU tar, Python's tarfile, Go's compress/gzip, skopeo
// and crane read the pack as one tar.gz (`gzip -l` alone misreports sizes,
// as it does for any multi-member file).
//
// Because tar headers hold no offsets, a member's bytes depend only on its
// chunk of its entry (path, mode, size, content), the build timestamp, the
// level and the compressor. Chunks are compressed on all cores and written
// in order, and the pack's sha256 is computed as it is written, straight
// into the output directory: the cache keeps the pack's pieces, not the
// pack. The members of an entry of 1 MiB or more that compress to 90% or
// less are kept in the cache under a key of exactly those inputs
// (archive.MemberKey), so a rebuild after one image changed copies them
// and compresses only the rest; members of incompressible entries (image
// layers are already compressed) are compressed again, which is faster
// than writing them to the cache and reading them back.
//
// `bale verify` re-encodes every entry it reads with these rules (level and
// compressor from the first member's "BL" field) and compares the result,
// byte for byte, with the pack's bytes as Scan reads them: any difference
// in names, headers, member boundaries, gzip headers or compression, and
// anything after the end-of-archive member, fails the "canonical" check.
// It also re-encodes each charts/*.tgz with the chart rules below and
// compares digests ("charts" check).
//
// # Reading a pack
//
// Every reader of packs goes through one reader, as archive/zip reads a
// zip: Scan reads a pack over an io.ReaderAt and its size, once, through
// archive's hostile tar reader (WalkTar) and gzip member reader, with at
// most TrailingSlack (2 MiB) of tar stream past the end of the last entry.
// It lists every entry with its size, sha256 and place (the gzip member
// its header starts in, and the members that hold exactly its segment,
// File.Members), keeps the pack's JSON files and every blob that looks
// like an index or manifest (MaxDocBytes in all), and passes each entry's
// body to an optional hook as it streams (`bale verify` re-encodes it
// there). File.Open reads one entry again from its own members only,
// checked against the digest Scan read. ImageWalker is the one walk of
// the OCI descriptors below images/index.json (MaxIndexDepth, MaxLayers,
// each document once), shared by verify, inspect and push; so `bale push`
// reads a pack once to verify it and again only for the blobs a registry
// lacks.
//
// # Chart archives
//
// A charts/NAME-VERSION.tgz is one gzip member at level 9 (ChartLevel),
// header as above but without an extra field, holding a tar written by
// archive.WriteTar with the pack's build timestamp: entries sorted, parent
// directories listed, uid/gid 0 without names, modes 0644/0755.
//
// # JSON encoding
//
// Every JSON file bale authors (pack-index.json, index.json, manifest.json,
// oci-layout) is encoded the same way: struct
// fields in declaration order, map keys sorted, two-space indentation, no
// HTML escaping, and a trailing newline. Arrays are never null: an empty
// list is written as [].
//
// # Pack index
//
// pack-index.json is, field by field in this order:
//
//	formatVersion    1
//	kind             "bootstrap-pack"
//	name             the target name (the pack is NAME.tar)
//	planId           "sha256:HEX" of the plan that built the pack
//	specDigest       "sha256:HEX" of the evaluated spec
//	sourceDateEpoch  the build timestamp, RFC 3339 UTC; every tar mtime
//	entries          [{path, size, sha256}] for every file in the pack
//	                 except pack-index.json itself and directories, sorted
//	                 by path (byte order); sha256 is bare lowercase hex
//	images           [{name, digest, layoutDigest, tags, platforms}]
//	                 sorted by name; digest is the image's pinned digest
//	                 (its index or manifest as resolved), layoutDigest
//	                 the digest images/index.json lists for it (digest
//	                 itself, or the filtered index's; see below),
//	                 platforms the chosen platforms of an index ([] for a
//	                 single manifest)
//	charts           [{name, version, path, sha256, upstreamDigest,
//	                 source: {type, path|url|ref}, values?: {path, size,
//	                 sha256}}] sorted by name; path and sha256 are the
//	                 re-archived chart's entry, upstreamDigest the digest
//	                 the plan pinned (the archive as published, or a
//	                 directory's file-list digest), values the chart's
//	                 values-airgap.yaml entry when the spec gives one
//	bundles          [{name, kind, digest, url}] the evidence/mirror
//	                 bundles the pack references, sorted by name
//
// The pack's rootHash is the hex sha256 of the pack-index.json bytes.
//
// # OCI layout
//
// images/index.json is an OCI image index (schemaVersion 2, mediaType
// application/vnd.oci.image.index.v1+json) with one descriptor per image, in
// image-name order: the image's top-level index or manifest (mediaType,
// digest, size) annotated with io.bale.image.name (the image name) and, if
// the image has tags, org.opencontainers.image.ref.name (its first tag, as
// written in the plan, e.g. "registry.example/team/app:1.0").
//
// images/manifest.json is a docker-save list, one element per image in the
// same order: {"Config", "RepoTags", "Layers"}, paths relative to images/.
// For an index image it describes the linux/amd64 manifest when that
// platform is chosen, else the first chosen platform in plan order.
//
// # Filtered indexes
//
// When an image is an index and the plan chooses only some of the
// manifests it lists, the plan records a filtered index
// (plan.Image.Filtered): plan.FilterIndex of the original with only the
// chosen manifests entries, in their original order, everything else
// unchanged, encoded compactly with sorted top-level keys (the plan
// package's encoding, not the indented one above: planner and executor
// both call that one function). The pack holds the filtered index in place
// of the original, and index.json points at it, so every manifest a blob
// in the pack names is in the pack. The pack index still lists the image
// by its pinned digest, the original index's.
package pack
