package eventtime

import "github.com/sluice-edge/sluice/engine/spec"

// The settings of the per-source watermarks, as the steps that order rows
// by event time (window, alert) read them from their configs.
const (
	// MaxWatermarkKeys bounds watermark_keys (a row of one of the most
	// advanced keys is compared with each of them).
	MaxWatermarkKeys = 16
	// DefaultWatermarkKeys is the default of watermark_keys.
	DefaultWatermarkKeys = 2
	// DefaultWatermarkIdleRows is the default of watermark_idle_rows.
	DefaultWatermarkIdleRows = 1000
)

// ParseWatermark reads watermark_keys (the capacity given to
// SourceMark.Observe) and watermark_idle_rows (the idle given to
// SourceMark.Mark) from a step's config, with an error for each that is
// out of bounds.
func ParseWatermark(cfg *spec.Config) (keys int, idleRows int64, errs spec.Errors) {
	keys, idleRows = int(cfg.Int("watermark_keys")), cfg.Int("watermark_idle_rows")
	if keys < 1 || keys > MaxWatermarkKeys {
		errs = append(errs, cfg.Errorf("watermark_keys", "watermark_keys must be between 1 and %d, got %d", MaxWatermarkKeys, cfg.Int("watermark_keys")))
	}
	if idleRows < 1 {
		errs = append(errs, cfg.Errorf("watermark_idle_rows", "watermark_idle_rows must be at least 1, got %d", idleRows))
	}
	return keys, idleRows, errs
}
