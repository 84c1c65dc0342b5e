#pragma once
/// @file The report configuration (`sigprop report CONFIG.toml`): a base spec (MODEL.md §3
/// tables [stack], [init], [input]), a [sweep] grid over any spec keys plus optional named
/// variants, the engines to run and the figures wanted. docs/report.md documents every key.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/spec.hpp"
#include "sim/jacobian.hpp"
#include "theory/clustering.hpp"
#include "theory/continuum.hpp"
#include "theory/engine.hpp"
#include "theory/shaped_sde.hpp"
#include "theory/spectrum.hpp"

namespace sigprop::reports {

/// One grid axis: a spec key ("stack.depth") and the values it takes, in TOML syntax.
struct SweepAxis {
  std::string key;                  ///< "table.key", checked against MODEL.md §3 when cells are built
  std::vector<std::string> values;  ///< TOML literals ("12", "\"pre\"")
  std::vector<std::string> labels;  ///< the same values for people ("12", "pre")
};

/// A named combination of spec values ("Pre-LN, 1/sqrt(L)"), crossed with the grid.
struct Variant {
  std::string label;
  std::vector<std::pair<std::string, std::string>> sets;  ///< ("stack.norm", "\"pre\"")
};

struct TheoryRun {
  bool enabled = true;
  theory::TheorySettings settings{};
};

struct SimulateRun {
  bool enabled = false;
  int samples = 32;          ///< independent random stacks per cell
  uint64_t seed = 1;         ///< Philox key (the same for every cell: common random numbers)
  int width = 0;             ///< d used by the Monte Carlo; 0 = the cell spec's stack.width
  int heads = 0;             ///< H used by the Monte Carlo; 0 = the cell spec's stack.heads
  std::string backend = "cpu";
  std::string precision = "float";
  std::string input_kernel = "sampled";  ///< "sampled" or "exact" (docs/simulate.md)
};

/// [engines.ode]: the depth-continuum ODE (theory/continuum.hpp, `sigprop ode --kind continuum`).
struct OdeRun {
  bool enabled = false;
  theory::ContinuumSettings settings{};
};

/// [engines.sde]: the shaped-network SDE (theory/shaped_sde.hpp, `sigprop ode --kind shaped-sde`).
struct SdeRun {
  bool enabled = false;
  theory::ShapedSettings settings{};
};

/// [engines.clustering]: the token-clustering flow (theory/clustering.hpp, `sigprop ode --kind
/// clustering`). Its rows are output times of the flow, not layers (docs/report.md).
struct ClusteringRun {
  bool enabled = false;
  theory::ClusteringSettings settings{};
};

/// [engines.spectrum]: Jacobian spectrum moments at infinite width (theory/spectrum.hpp,
/// `sigprop spectrum --engine theory`); the density grid is sized per cell from the moments.
struct SpectrumRun {
  bool enabled = false;
  theory::SpectrumSettings settings{};
  int grid_points = 200;
};

/// [engines.spectrum_simulate]: Jacobian spectrum by Monte Carlo (sim/jacobian.hpp,
/// `sigprop spectrum --engine simulate`); threads come from the run options, never the config.
struct SpectrumSimulateRun {
  bool enabled = false;
  sim::JacobianSettings settings{};
  int grid_points = 200;
};

/// [engines.measure]: a trained (or imported) model measured on a corpus (validate/measure.hpp,
/// `sigprop validate`). The stack comes from the checkpoint: it is the report's base spec, and
/// [stack]/[init] keys that differ from it, or sweep and variant keys in stack.* or init.*, are
/// errors naming the key. Paths are used as given (relative to the working directory).
struct MeasureRun {
  bool enabled = false;
  std::string checkpoint;     ///< sigprop safetensors checkpoint or Hugging Face model folder (required)
  std::string corpus;         ///< text file; its bytes are the tokens (required)
  long long tokens = 8192;    ///< tokens measured in all (sequences = tokens / T)
  int seq_len = 0;            ///< T (0 = the model's context)
  std::string precision = "float";
};

struct FigureSet {
  /// One per-layer figure per metric (MODEL.md §2 names, or sv2_mean / sv2_var of the spectrum engines).
  std::vector<std::string> metrics{"q", "rho", "grad_var", "update_ratio", "ang_dist"};
  /// The depth-returns figure (needs stack.depth as a sweep axis with >= 2 values).
  bool depth_returns = true;
};

/// The validity atlas ([atlas], docs/atlas.md): instead of a grid, `configurations` specs drawn
/// by a space-filling sample over the ranges below, each run by the theory and by the Monte
/// Carlo at every width of `widths` (heads = width / head_dim), compared per metric and layer.
struct AtlasConfig {
  bool enabled = false;
  int configurations = 300;
  uint64_t seed = 1;             ///< digital shift (Sobol) or permutations (LHS)
  std::string sampler = "sobol";  ///< "sobol" (digitally shifted) or "lhs" (Latin hypercube)
  std::vector<int> widths{1024, 4096, 16384};
  /// Monte Carlo samples per width (same length as widths); empty = engines.simulate.samples at
  /// every width. Fewer at the larger widths: their means are closer to the limit and cost more.
  std::vector<int> samples;
  int head_dim = 64;
  // Categorical dimensions: TOML names (MODEL.md §3), one drawn per configuration.
  std::vector<std::string> blocks{"attn+mlp", "attn", "mlp"};
  std::vector<std::string> norm{"pre", "post", "none", "lns", "deepnorm"};
  std::vector<std::string> norm_type{"layernorm", "rmsnorm"};
  std::vector<std::string> activation{"relu", "gelu", "tanh", "silu"};
  std::vector<std::string> mask{"causal", "none"};
  std::vector<std::string> qk_scale{"1/sqrt(dh)", "1/dh"};
  /// "1", "1/sqrt(L)" or "number" (a uniform draw from branch_number).
  std::vector<std::string> branch_scale{"1", "1/sqrt(L)", "number"};
  // Continuous ranges [lo, hi]: sigma_qk2, sigma_w2, depth and tokens log-uniform, branch_number uniform.
  std::pair<double, double> branch_number{0.2, 1.0};
  std::pair<double, double> sigma_qk2{0.25, 4.0};
  std::pair<double, double> sigma_w2{0.5, 2.0};
  std::pair<int, int> depth{4, 128};
  std::pair<int, int> tokens{4, 64};
  /// Metrics compared (MODEL.md §2 names).
  std::vector<std::string> metrics{"q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var"};
  /// Family-wise false-alarm rate of the "error beyond the Monte Carlo's uncertainty" flag:
  /// |z| > z_crit with z_crit Bonferroni-corrected over every compared point of the atlas.
  double alpha = 0.01;
  int worst = 10;  ///< worst configurations shown with their per-layer figure
  /// Random streams of the engines per configuration: "independent" (the Monte Carlo of
  /// configuration i at width index w uses seed engines.simulate.seed + i * widths + w, the
  /// sampled theory engines.theory.seed + i, so that the configurations' Monte Carlo errors are
  /// independent and the percentiles over configurations are not one draw's luck), "by-width"
  /// (as independent, but keyed by the width's value, not its position: seed + i * 2^21 + width,
  /// and the theory's spec at the nominal width 64 * head_dim (at most 2^20), so that adding or removing a width
  /// keeps every other job's seed and hash, and its cells) or "shared" (every job uses the
  /// engines' own seeds, as before 2026-12-06).
  std::string streams = "independent";
  /// Refinement (docs/atlas.md "Refinement"): the largest factor, a power of two in [1, 64], by which
  /// a configuration's Monte Carlo samples (at every width) may be multiplied so that its points not
  /// yet resolved to the goals become resolved; 1 = no refinement. After the first pass the atlas
  /// picks, from the standard errors alone, the smallest sufficient power of two per configuration
  /// and runs the extra samples (the same random streams, continued) as further jobs.
  int refine = 1;
  /// The same for the sampled theory (1/sqrt(d_h) attention, or 1/d_h with finite_dh): the largest
  /// factor on engines.theory.attn_samples where the theory's own s.e. keeps a point from being
  /// resolved; the refined theory job replaces the first one. 1 = none.
  int refine_theory = 1;
};

struct ReportConfig {
  std::string title = "sigprop report";
  std::string origin = "<built-in default report>";  ///< file name used in error messages
  std::string base_toml;            ///< the base spec as TOML ([stack], [init], [input])
  StackSpec base;                   ///< base_toml parsed and validated
  std::vector<SweepAxis> axes;      ///< crossed in the order of this vector (alphabetical keys)
  std::vector<Variant> variants;    ///< empty = no variants
  TheoryRun theory;
  SimulateRun simulate;
  OdeRun ode;
  SdeRun sde;
  ClusteringRun clustering;
  SpectrumRun spectrum;
  SpectrumSimulateRun spectrum_simulate;
  MeasureRun measure;
  FigureSet figures;
  AtlasConfig atlas;               ///< enabled by an [atlas] table; then [sweep] must be absent
};

/// Names figures.metrics accepts: MODEL.md §2's metrics, then the spectrum engines' per-layer
/// moments of the squared singular values of J_l (sv2_mean, sv2_var; docs/spectrum.md).
const std::vector<std::string>& report_metric_names();

/// How many of the config's engines are enabled.
int enabled_engines(const ReportConfig& cfg);

/// Parses a report config; ConfigError names the key (and the origin file) for unknown
/// keys, wrong types and out-of-range values, including spec keys in [sweep] and variants.
ReportConfig parse_report_config(std::string_view text, const std::string& origin);
/// Reads and parses a file (IoError if unreadable).
ReportConfig load_report_config(const std::filesystem::path& path);
/// The built-in default ("why does depth give diminishing returns?"); its text is
/// default_report_toml() and examples/report_default.toml holds a copy.
ReportConfig default_report_config();
const std::string& default_report_toml();
/// The config with every default filled in, as TOML (parses back to the same config).
std::string to_toml(const ReportConfig& cfg);

}  // namespace sigprop::reports
