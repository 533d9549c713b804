package infer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/sluice-edge/sluice/engine/bundle"
)

// Model is a loaded model that scores whole batches. It is the contract
// between the infer step and a runtime: a new runtime implements it and is
// added to LoadBytes.
//
// A Model is used by one goroutine at a time; Predict may keep buffers
// between calls.
type Model interface {
	// Runtime names the runtime ("onnx" or "trees").
	Runtime() string
	// Features is the number of values of one input row.
	Features() int
	// FeatureNames returns the feature names the model file declares, in
	// the model's order, or nil when it declares none.
	FeatureNames() []string
	// Outputs describes the model's outputs, in order; the values of one
	// row are the elements of every output, in this order.
	Outputs() []Output
	// Width is the number of values Predict writes per row: the sum of the
	// outputs' Elems.
	Width() int
	// Predict scores rows rows whose features are in, row-major
	// (rows*Features() values), and writes rows*Width() values to out,
	// row-major. It is one call of the runtime for the whole batch.
	Predict(in []float64, rows int, out []float64) error
}

// SequenceModel is implemented by a model whose input is a sequence: an
// ONNX graph whose input has the shape [batch, steps, values]. Features
// is then steps*values, and Predict reads each row as steps rows of
// values, oldest first. The infer step feeds it only with its sequence
// option, whose length must be the model's steps.
type SequenceModel interface {
	Model
	// SequenceSteps returns the steps of one input row, or 0 when the
	// model takes one row of features (a [batch, features] input).
	SequenceSteps() int
}

// Output describes one output of a model.
type Output struct {
	// Name is the output's name in the model (the ONNX graph output, or
	// "prediction" / "score" for a tree ensemble).
	Name string
	// Shape is the shape of one row's share of the output (the dimensions
	// after the batch dimension).
	Shape []int
	// Elems is the number of values the output holds per row.
	Elems int
	// Probability is set when the values are probabilities (a binary or
	// multiclass tree ensemble's transformed output).
	Probability bool
}

// Runtimes lists the runtimes LoadBytes knows, in the order they are documented.
var Runtimes = []string{"onnx", "trees"}

// UnsupportedError reports a model that uses what its runtime cannot run:
// an operator (ONNX), an attribute of an operator, or a model format or
// feature (trees). It is returned when the model is loaded, never at the
// first batch.
type UnsupportedError struct {
	// Runtime is "onnx" or "trees".
	Runtime string
	// Operator is the unsupported operator or feature ("TreeEnsembleRegressor",
	// "opset 17", "linear trees").
	Operator string
	// Node names where it occurs ("node 3 \"dense\""), or is empty.
	Node string
	// Reason says more, or is empty.
	Reason string
}

// Error renders "onnx runtime does not support operator X (node ...): reason".
func (e *UnsupportedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the %s runtime does not support %s", e.Runtime, e.Operator)
	if e.Node != "" {
		fmt.Fprintf(&b, " (%s)", e.Node)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// RuntimeFor returns the runtime a model file's extension implies: ".onnx"
// is onnx; ".txt", ".json", ".model", ".bin" and ".lgb" are trees.
func RuntimeFor(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".onnx":
		return "onnx", nil
	case ".txt", ".json", ".model", ".bin", ".lgb":
		return "trees", nil
	}
	return "", fmt.Errorf("cannot tell the runtime of %q from its extension (.onnx for onnx; .txt, .json, .model, .bin, .lgb for trees): set runtime", filepath.Base(path))
}

// MaxModelBytes bounds a model file.
const MaxModelBytes = 256 << 20

// readModel reads the regular file at path, at most limit bytes; a named
// pipe is refused without waiting for a writer.
func readModel(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readOpen(f, path, limit)
}

// readOpen reads the open file f (named name in errors): a regular file
// of at most limit bytes.
func readOpen(f *os.File, name string, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	tooLarge := fmt.Errorf("%s: more than the %d MiB limit of a model", name, limit>>20)
	if fi.Size() > limit {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, tooLarge
	}
	return data, nil
}

// readReleaseModel reads the model file name of the release in root for a
// pipeline file in dir: a relative name is looked up next to the pipeline
// file, then from the release's root; it must stay inside the release
// (no absolute path, no .. out of it, no symbolic link out of it) and be
// at most a bundle's file size.
func readReleaseModel(root, dir, name string) ([]byte, error) {
	if filepath.IsAbs(name) {
		return nil, errors.New("an absolute path names a file outside the release: ship the model in the release (ml/) and name it relative to the pipeline file or the release's root")
	}
	var cands []string
	for _, base := range []string{dir, root} {
		if base == "" {
			continue
		}
		rel, err := filepath.Rel(root, filepath.Join(base, name))
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || slices.Contains(cands, rel) {
			continue
		}
		cands = append(cands, rel)
	}
	if len(cands) == 0 {
		return nil, errors.New("the path leaves the release: a model is a file of the release (ml/)")
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	for _, rel := range cands {
		// Non-blocking: opening a named pipe must not wait for a writer.
		f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.ToSlash(rel), unwrapPath(err))
		}
		data, err := readOpen(f, filepath.ToSlash(rel), bundle.MaxFileSize)
		f.Close()
		return data, err
	}
	shown := make([]string, len(cands))
	for i, c := range cands {
		shown[i] = filepath.ToSlash(c)
	}
	return nil, fmt.Errorf("no such file in the release (looked for %s)", strings.Join(shown, " and "))
}

// unwrapPath drops the operation and path of a *fs.PathError, which name
// the path as given to the release's root.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Digest returns "sha256:" and the first 12 hex digits of data's SHA-256.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// LoadBytes prepares the model file data for runtime ("onnx" or
// "trees"). It checks every operator or tree against what the runtime
// supports and runs one test inference on a row of zeros, so a model that
// loads also runs.
func LoadBytes(data []byte, runtime string) (Model, error) {
	return LoadBytesWith(data, runtime, LoadOptions{})
}

// LoadOptions changes how LoadBytesWith prepares a model.
type LoadOptions struct {
	// Gonnx runs every ONNX graph in gonnx, also a chain of dense layers
	// that the step would otherwise run itself: to measure or compare
	// both paths (sluice bench --scenario infer).
	Gonnx bool
}

// LoadBytesWith is LoadBytes with options.
func LoadBytesWith(data []byte, runtime string, opts LoadOptions) (Model, error) {
	var (
		m   Model
		err error
	)
	switch runtime {
	case "onnx":
		var om *onnxModel
		om, err = loadONNX(data)
		if err == nil && opts.Gonnx {
			om.dense = nil
		}
		m = om
	case "trees":
		m, err = loadTrees(bytes.Clone(data))
	default:
		return nil, fmt.Errorf("unknown runtime %q (want one of %s)", runtime, strings.Join(Runtimes, ", "))
	}
	if err != nil {
		return nil, err
	}
	if err := smokeTest(m); err != nil {
		return nil, fmt.Errorf("test inference on a row of zeros: %w", err)
	}
	return m, nil
}

// smokeTest runs the model once on one row of zeros: a model that fails
// on it is refused before it sees a row.
func smokeTest(m Model) error {
	in := make([]float64, m.Features())
	out := make([]float64, m.Width())
	return m.Predict(in, 1, out)
}

// LoadReleaseModel reads and loads the model file name of the release in
// root for a pipeline file in dir, as the step does when it is built in a
// release (see New): the path must stay inside the release; runtime ""
// is the one the extension implies. The model is checked against its
// runtime and run once on a row of zeros. It lets a release be checked
// model by model before it is built (sluice bundle build).
func LoadReleaseModel(root, dir, name, runtime string) (Model, error) {
	data, err := readReleaseModel(root, dir, name)
	if err != nil {
		return nil, err
	}
	if runtime == "" {
		if runtime, err = RuntimeFor(name); err != nil {
			return nil, err
		}
	}
	return LoadBytes(data, runtime)
}
