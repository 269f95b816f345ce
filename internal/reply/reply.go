// Package reply writes the API's JSON answers, so every module answers in
// the same shape: a JSON body, and for errors {"error": ..., "field": ...}.
package reply

import (
	"encoding/json"
	"net/http"
)

// JSON writes v as the body with status code.
func JSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ErrorBody is the JSON shape of every API error.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// Error writes an error naming the field at fault ("" when none is).
func Error(w http.ResponseWriter, code int, field, msg string) {
	JSON(w, code, ErrorBody{Error: msg, Field: field})
}
