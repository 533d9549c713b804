package pipelines

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-edge/sluice/engine/redact"
	"github.com/sluice-edge/sluice/engine/spec"
)

// LogLevels are the values of a release's log_level setting.
var LogLevels = []string{"debug", "info", "warn", "error"}

// SettingsSpec declares a settings file of a release (config/*.yaml): the
// edge's log level and the variables its pipelines interpolate.
var SettingsSpec = spec.Spec{
	Name:    "settings",
	Summary: "Edge settings shipped with a release (config/*.yaml).",
	Description: "Several files are merged; a setting or variable set in two files is an error naming both. " +
		"A variable's value is either a plain string (never a secret: a variable whose name names one — " +
		"password, token, secret, ...key — or a URL with a password is refused in clear text) or a reference " +
		"to a secret kept on the edge: `{env: NAME}` (an environment variable of the engine) or `{file: PATH}` " +
		"(an absolute path; the file's content, without a final newline). Secrets read this way are masked in logs and errors.",
	Fields: []spec.Field{
		{Name: "log_level", Type: spec.String, Optional: true, Enum: LogLevels,
			Description: "Level of the engine's log.", Example: "info"},
		{Name: "vars", Type: spec.Map, Elem: spec.Any, Optional: true,
			Description: "Variables for `${NAME}` in the release's pipelines, by name: a plain string, `{env: NAME}` or `{file: PATH}`. They take precedence over the engine's environment.",
			Example:     map[string]any{"SINK_URL": "nats://broker:4222", "RATE": "200", "DB_PASSWORD": map[string]any{"env": "DB_PASSWORD"}}},
	},
}

// Settings are a release's edge settings (its config/ files).
type Settings struct {
	// LogLevel is one of LogLevels, or "" when no file sets it.
	LogLevel string
	// Vars are the variables' values, secrets resolved. Secret values are
	// registered with redact.
	Vars map[string]string
	// Secrets lists the variables whose values came from the environment
	// or a file, sorted.
	Secrets []string
}

// maxSecretFile bounds a secret file named by a variable.
const maxSecretFile = 64 << 10

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseSettings merges the settings files (already read), resolving
// secrets with env.
func parseSettings(files []releaseData, env LookupEnv) (*Settings, spec.Errors) {
	s := &Settings{Vars: map[string]string{}}
	var errs spec.Errors
	var levelAt spec.Pos
	varAt := map[string]spec.Pos{}
	for _, f := range files {
		n, es := decodeOne(f.rel, f.data)
		if len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		cfg, es := SettingsSpec.Parse(f.rel, n)
		errs = append(errs, es...)
		if cfg.Has("log_level") {
			if s.LogLevel != "" {
				errs = append(errs, cfg.Errorf("log_level", "log_level is also set at %s", levelAt))
			} else {
				s.LogLevel, levelAt = cfg.String("log_level"), cfg.Pos("log_level")
			}
		}
		for _, e := range cfg.Entries("vars") {
			if prev, dup := varAt[e.Key]; dup {
				errs = append(errs, spec.Errorf(e.KeyPos, "variable %s is also set at %s", e.Key, prev))
				continue
			}
			varAt[e.Key] = e.KeyPos
			v, secret, err := varValue(e, env)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.Vars[e.Key] = v
			if secret {
				s.Secrets = append(s.Secrets, e.Key)
			}
		}
	}
	slices.Sort(s.Secrets)
	return s, errs
}

// varValue resolves one variable.
func varValue(e spec.MapEntry, env LookupEnv) (string, bool, *spec.Error) {
	if !varName.MatchString(e.Key) {
		return "", false, spec.Errorf(e.KeyPos, "variable name %q must be letters, digits and _ (not starting with a digit)", e.Key)
	}
	switch v := e.Value.(type) {
	case string:
		if redact.SecretName(e.Key) && v != "" {
			return "", false, spec.Errorf(e.ValuePos, "variable %s names a secret: a release never carries one in clear text; write {env: NAME} or {file: PATH} to read it on the edge", e.Key)
		}
		if redact.HasURLPassword(v) {
			return "", false, spec.Errorf(e.ValuePos, "variable %s holds a URL with a password: a release never carries one in clear text; put the URL in {env: NAME} or {file: PATH}", e.Key)
		}
		return v, false, nil
	case int:
		return strconv.Itoa(v), false, nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), false, nil
	case bool:
		return strconv.FormatBool(v), false, nil
	case map[string]any:
		if len(v) != 1 {
			return "", false, spec.Errorf(e.ValuePos, "variable %s: a reference is {env: NAME} or {file: PATH}, got keys %s", e.Key, strings.Join(slices.Sorted(maps.Keys(v)), ", "))
		}
		for kind, ref := range v {
			name, _ := ref.(string)
			switch {
			case name == "":
				return "", false, spec.Errorf(e.ValuePos, "variable %s: %s needs a non-empty string", e.Key, kind)
			case kind == "env":
				val, ok := env(name)
				if !ok {
					return "", false, spec.Errorf(e.ValuePos, "variable %s: environment variable %s is not set", e.Key, name)
				}
				redact.Register(val)
				return val, true, nil
			case kind == "file":
				if !filepath.IsAbs(name) {
					return "", false, spec.Errorf(e.ValuePos, "variable %s: file %q must be an absolute path on the edge (a file of the release would carry the secret in the bundle)", e.Key, name)
				}
				data, err := spec.ReadConfigFile(name, maxSecretFile)
				if err != nil {
					return "", false, spec.Errorf(e.ValuePos, "variable %s: %v", e.Key, unwrapPathErr(err))
				}
				val := strings.TrimRight(string(data), "\r\n")
				redact.Register(val)
				return val, true, nil
			default:
				return "", false, spec.Errorf(e.ValuePos, "variable %s: a reference is {env: NAME} or {file: PATH}, not %s", e.Key, kind)
			}
		}
	}
	return "", false, spec.Errorf(e.ValuePos, "variable %s: a value is a string, {env: NAME} or {file: PATH}", e.Key)
}

// lookup returns the variables of the settings, then those of env.
func (s *Settings) lookup(env LookupEnv) LookupEnv {
	if s == nil || len(s.Vars) == 0 {
		return env
	}
	return func(name string) (string, bool) {
		if v, ok := s.Vars[name]; ok {
			return v, true
		}
		return env(name)
	}
}

// decodeOne decodes a file holding one YAML document, checking for keys
// defined twice.
func decodeOne(file string, data []byte) (*yaml.Node, spec.Errors) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, spec.Errors{spec.Errorf(spec.Pos{File: file, Line: 1, Col: 1}, "file is empty")}
		}
		return nil, spec.Errors{yamlError(file, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, spec.Errors{spec.Errorf(nodePos(file, &next), "the file holds more than one YAML document")}
	case !errors.Is(err, io.EOF):
		return nil, spec.Errors{yamlError(file, err)}
	}
	if es := checkKeys(file, &root); len(es) > 0 {
		return nil, es
	}
	return &root, nil
}
