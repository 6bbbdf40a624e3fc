package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/bale-build/bale/kit"
	"github.com/bale-build/bale/server/auth"
)

// releaseFile is one file of a release export, as the status lists it.
type releaseFile struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	DownloadURI string `json:"downloadUri"`
}

// releaseStatus is a release export as the API shows it. Once it has
// succeeded, the shared fields' artifact is the kit archive (Archive), and
// Files lists every file: the kit's, the archive and its .sha256.
type releaseStatus struct {
	exportFields
	Archive string        `json:"archive,omitempty"`
	Files   []releaseFile `json:"files,omitempty"`
}

// releaseFileURI is where file name of release export id is downloaded.
func releaseFileURI(id, name string) string { return releasePath + "/" + id + "/files/" + name }

// releaseStatusOf reads release export e's status, with its build's files
// once it has succeeded.
func (s *Server) releaseStatusOf(ctx context.Context, e exportRecord) (releaseStatus, error) {
	st := releaseStatus{exportFields: fieldsOf(e, releaseFileURI(e.ID, e.File))}
	if e.Status != statusSucceeded {
		return st, nil
	}
	files, err := s.store.buildFiles(ctx, e.PlanID)
	if err != nil {
		return st, err
	}
	st.Archive = e.File
	st.Files = make([]releaseFile, 0, len(files))
	for _, f := range files {
		st.Files = append(st.Files, releaseFile{Name: f.Name, Kind: f.Kind, Size: f.Size, SHA256: f.SHA256,
			DownloadURI: releaseFileURI(e.ID, f.Name)})
	}
	return st, nil
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileRelease)
	if !ok {
		return
	}
	e, err := s.applyWait(w, r, e)
	if err != nil {
		if r.Context().Err() == nil {
			s.writeError(w, r, err)
		}
		return
	}
	st, err := s.releaseStatusOf(r.Context(), e)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, st)
}

// releaseFile serves one file of a release export from its file, with the
// pack download's headers. The name must be one of the build's recorded
// files before any file is opened: no other name reaches the file system.
func (s *Server) releaseFile(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	e, ok := s.lookupExport(w, r, p, profileRelease)
	if !ok {
		return
	}
	name := mux.Vars(r)["name"]
	if !kit.ValidName(name) {
		writeProblem(w, r, probNotFound, "no such file in the export")
		return
	}
	if e.Status != statusSucceeded {
		writeProblem(w, r, probExportNotReady, "the export is "+e.Status)
		return
	}
	files, err := s.store.buildFiles(r.Context(), e.PlanID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, f := range files {
		if f.Name == name {
			s.serveFile(w, r, e, f.Name, contentTypeOf(f.Name), f.SHA256)
			return
		}
	}
	writeProblem(w, r, probNotFound, "no file "+name+" in the export")
}

// contentTypeOf is the media type a kit file is served as.
func contentTypeOf(name string) string {
	switch {
	case strings.HasSuffix(name, ".tar.gz"):
		return "application/gzip"
	case strings.HasSuffix(name, ".json"), strings.HasSuffix(name, ".bundle"):
		return "application/json"
	case strings.HasSuffix(name, ".sh"):
		return "text/x-shellscript; charset=utf-8"
	case strings.HasSuffix(name, ".sha256"), strings.HasSuffix(name, ".pub"), name == kit.SumsName:
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}
