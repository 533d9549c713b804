package infer

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dmitryikh/leaves"
	"github.com/dmitryikh/leaves/transformation"
)

// treeModel runs a gradient-boosted tree ensemble with leaves: LightGBM
// text or JSON models and XGBoost binary models. The ensemble runs raw and
// the objective's transformation (logistic, softmax, exponential) is
// applied here, in place, so that a batch allocates nothing.
type treeModel struct {
	e        *leaves.Ensemble
	format   string
	features int
	names    []string
	raw      bool // an objective whose output needs no transformation
	tf       transformation.TransformType
	outs     []Output
	width    int
}

// lgObjectives are the LightGBM objectives (first word) whose output
// transformation leaves knows, besides "regression*" (no transformation).
var lgObjectives = []string{"binary", "multiclass", "poisson", "gamma", "tweedie"}

// lgRawObjectives are regression objectives whose output is used as is,
// which leaves does not know by name: their models load without a
// transformation.
var lgRawObjectives = []string{"huber", "fair", "quantile", "mape"}

func loadTrees(data []byte) (*treeModel, error) {
	head := bytes.TrimLeft(data, " \t\r\n")
	var (
		e   *leaves.Ensemble
		err error
		m   = &treeModel{}
	)
	switch {
	case bytes.HasPrefix(head, []byte("tree")):
		m.format = "LightGBM text"
		if err := m.checkLightGBMText(data); err != nil {
			return nil, err
		}
		e, err = leaves.LGEnsembleFromReader(bufio.NewReader(bytes.NewReader(data)), !m.raw)
	case bytes.HasPrefix(head, []byte("{")):
		if bytes.Contains(head, []byte(`"learner"`)) {
			return nil, &UnsupportedError{Runtime: "trees", Operator: "the XGBoost JSON format",
				Reason: "save the booster in XGBoost's binary format, or train with LightGBM and save_model as text"}
		}
		m.format = "LightGBM JSON"
		e, err = leaves.LGEnsembleFromJSON(bytes.NewReader(data), true)
	default:
		m.format = "XGBoost binary"
		e, err = leaves.XGEnsembleFromReader(bufio.NewReader(bytes.NewReader(data)), true)
	}
	if err != nil {
		return nil, fmt.Errorf("%s model: %w", m.format, err)
	}
	m.tf = e.Transformation().Type()
	switch m.tf {
	case transformation.Raw, transformation.Logistic, transformation.Softmax, transformation.Exponential:
	default:
		return nil, &UnsupportedError{Runtime: "trees", Operator: "transformation " + m.tf.Name()}
	}
	m.e = e.EnsembleWithRawPredictions()
	m.features = e.NFeatures()
	if m.names != nil && len(m.names) != m.features {
		m.names = nil
	}
	m.width = e.NOutputGroups()
	prob := m.tf == transformation.Logistic || m.tf == transformation.Softmax
	name := "prediction"
	if prob {
		name = "score"
	}
	m.outs = []Output{{Name: name, Shape: []int{m.width}, Elems: m.width, Probability: prob}}
	return m, nil
}

// checkLightGBMText reads the header of a LightGBM text model: it refuses
// what leaves would misread (linear trees) or not transform (an objective
// it does not know), and takes the feature names.
func (m *treeModel) checkLightGBMText(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	tree := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, _ := strings.Cut(line, "=")
		switch {
		case strings.HasPrefix(line, "Tree="):
			fmt.Sscanf(val, "%d", &tree)
		case key == "is_linear" && strings.TrimSpace(val) == "1":
			return &UnsupportedError{Runtime: "trees", Operator: "linear trees (linear_tree=true)",
				Node: fmt.Sprintf("Tree=%d", tree), Reason: "leaves predicts only constant leaves"}
		case key == "objective" && tree == 0:
			obj, _, _ := strings.Cut(val, " ")
			m.raw = slices.Contains(lgRawObjectives, obj)
			if !strings.HasPrefix(obj, "regression") && !slices.Contains(lgObjectives, obj) && !m.raw {
				return &UnsupportedError{Runtime: "trees", Operator: "objective " + obj,
					Reason: "supported: regression*, " + strings.Join(lgObjectives, ", ") + ", " + strings.Join(lgRawObjectives, ", ")}
			}
		case key == "feature_names":
			m.names = strings.Fields(val)
		case line == "end of trees":
			return nil
		}
	}
	return sc.Err()
}

func (m *treeModel) Runtime() string        { return "trees" }
func (m *treeModel) Features() int          { return m.features }
func (m *treeModel) FeatureNames() []string { return m.names }
func (m *treeModel) Outputs() []Output      { return m.outs }
func (m *treeModel) Width() int             { return m.width }

// Predict walks every tree for every row, on the calling goroutine.
func (m *treeModel) Predict(in []float64, rows int, out []float64) error {
	if rows == 0 {
		return nil
	}
	if len(in) < rows*m.features || len(out) < rows*m.width {
		return fmt.Errorf("trees: %d rows need %d input and %d output values, got %d and %d",
			rows, rows*m.features, rows*m.width, len(in), len(out))
	}
	if err := m.e.PredictDense(in[:rows*m.features], rows, m.features, out[:rows*m.width], 0, 1); err != nil {
		return fmt.Errorf("trees: %w", err)
	}
	out = out[:rows*m.width]
	switch m.tf {
	case transformation.Logistic:
		for i, v := range out {
			out[i] = 1 / (1 + math.Exp(-v))
		}
	case transformation.Exponential:
		for i, v := range out {
			out[i] = math.Exp(v)
		}
	case transformation.Softmax:
		for r := 0; r < len(out); r += m.width {
			softmax(out[r : r+m.width])
		}
	}
	return nil
}

// softmax replaces v by its softmax, as leaves computes it.
func softmax(v []float64) {
	mx := math.Inf(-1)
	for _, x := range v {
		mx = max(mx, x)
	}
	s := 0.0
	for i, x := range v {
		v[i] = math.Exp(x - mx)
		s += v[i]
	}
	for i := range v {
		v[i] /= s
	}
}
