package server

import (
	"net/http"

	"github.com/sluice-edge/sluice/engine/hub/console"
)

// withConsole serves the console (package console) under console.Prefix
// beside the token-checked API; the console reads the API's read
// endpoints (open, the handler without the token check) with its
// session.
func (a *API) withConsole(open, checked http.Handler) http.Handler {
	page, err := console.New(console.Options{Token: a.token, API: open, Log: a.log})
	if err != nil { // only without a token, which Listen refuses
		a.log.Error("hub console", "err", err)
		return checked
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, page)
	mux.Handle("/", checked)
	return mux
}
