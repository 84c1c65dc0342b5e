#pragma once
/// @file The facade of libsigprop: build a StackSpec (in code, from TOML text or a file, with
/// `table.key=value` overrides), run an engine on it, read the result as a Profile.
///
/// Every function here is a plain call on the calling thread (plus `threads` workers where a
/// setting says so); calls on different threads with their own arguments are independent.
/// Errors are sigprop::Error subclasses (sigprop/error.hpp) whose messages name spec keys and
/// settings fields, never command-line flags. Expected outcomes (divergence at a layer) are
/// values in the Profile: NaN rows and warnings(). See docs/library.md.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sigprop/error.hpp"
#include "sigprop/export.hpp"
#include "sigprop/progress.hpp"
#include "sigprop/spec.hpp"

namespace sigprop::api {

// ---------------------------------------------------------------------------------------------
// Specs

/// The built-in default spec (README.md, examples/default.toml).
SIGPROP_API StackSpec default_spec();
/// Parses and validates a TOML spec (MODEL.md §3). `origin` names the text in error messages.
/// Throws ConfigError naming the key (unknown key, wrong type, out of range).
SIGPROP_API StackSpec spec_from_toml(std::string_view text, const std::string& origin = "<spec>");
/// Reads, parses and validates a TOML spec file. IoError when unreadable, ConfigError when invalid.
SIGPROP_API StackSpec spec_from_file(const std::string& path);
/// Applies overrides "table.key=value" (value in TOML syntax or a bare word, e.g.
/// "stack.depth=48", "stack.qk_scale=1/dh") in order, the last one for a key winning, then
/// validates. Throws ConfigError naming the key; `spec` is unchanged when anything throws.
SIGPROP_API void apply_overrides(StackSpec& spec, const std::vector<std::string>& overrides);
/// Throws ConfigError naming the first key whose value is out of range (as StackSpec::validate).
SIGPROP_API void validate(const StackSpec& spec);
/// The spec as TOML (every key; round-trips through spec_from_toml).
SIGPROP_API std::string spec_to_toml(const StackSpec& spec);
/// The spec as a JSON object {"stack": {...}, "init": {...}, "input": {...}} (every key).
SIGPROP_API std::string spec_to_json(const StackSpec& spec, int indent = -1);

// ---------------------------------------------------------------------------------------------
// Results

/// What every engine returns: one row per layer (per output time for the clustering ODE), one
/// contiguous array per metric column. Owns its data; copyable and movable; const member
/// functions may be called from several threads at once.
class SIGPROP_API Profile {
 public:
  struct Impl;
  explicit Profile(std::unique_ptr<Impl> impl);
  Profile(const Profile& other);
  Profile(Profile&& other) noexcept;
  Profile& operator=(const Profile& other);
  Profile& operator=(Profile&& other) noexcept;
  ~Profile();

  /// Engine name: "theory", "simulate", "continuum", "clustering", "shaped-sde",
  /// "spectrum-theory" or "spectrum-simulate".
  [[nodiscard]] std::string engine() const;
  /// sigprop version that produced it.
  [[nodiscard]] std::string version() const;
  /// Rows: spec().depth + 1 for theory and simulate (layers 0..L).
  [[nodiscard]] int layers() const;
  /// Every column in order, e.g. "q", "rho", ..., and "<name>_se" (standard error of the
  /// ensemble mean) for Monte Carlo engines and sampled attention integrals.
  [[nodiscard]] const std::vector<std::string>& metrics() const;
  [[nodiscard]] bool has(std::string_view metric) const;
  /// One column over all rows: layers() contiguous doubles, NaN where undefined (update_ratio
  /// and ang_dist at layer 0, diverged layers, _se with one sample). Valid while this Profile
  /// lives. Throws ConfigError naming the metric and the available ones when it is unknown.
  [[nodiscard]] std::span<const double> values(std::string_view metric) const;
  /// The resolved spec the engine ran.
  [[nodiscard]] const StackSpec& spec() const;
  [[nodiscard]] std::string spec_toml() const;
  [[nodiscard]] std::string spec_json() const;
  /// Engine settings (samples, seed, backend, precision, threads, ...) as a JSON object.
  [[nodiscard]] std::string settings_json() const;
  /// Engine-specific summaries (fixed points, KS statistics, ...) as a JSON object.
  [[nodiscard]] std::string extras_json() const;
  /// e.g. "non-finite value first at layer 37".
  [[nodiscard]] const std::vector<std::string>& warnings() const;
  /// The whole profile as `sigprop <engine> --json` writes it (indent < 0: one line).
  [[nodiscard]] std::string to_json(int indent = 2) const;
  /// As `--csv` writes it.
  [[nodiscard]] std::string to_csv() const;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Engines. An unset optional means the engine's own default (docs/theory.md, docs/simulate.md,
// docs/ode.md list them); the values are checked when the call starts.

/// Infinite-width theory (docs/theory.md). Only the qk_scale = 1/sqrt(dh) attention integral is
/// sampled; the other fields do not matter elsewhere.
struct TheorySettings {
  std::optional<int> attn_samples;         ///< logit draws per layer (sigprop theory --attn-samples)
  std::optional<std::uint64_t> seed;       ///< seed of the attention integral's draws
  std::optional<int> error_batches;        ///< replicates behind the _se columns (0 = off, >= 2)
  std::optional<std::string> attn_method;  ///< "qmc" or "mc"
  std::optional<int> quad_order;           ///< Gauss-Legendre points per piece (tanh, silu, gelu_tanh)
  /// qk_scale = 1/dh: keep the logits' variance at the spec's d_h = width / heads (sampled
  /// Gaussian logits) instead of the d_h -> infinity uniform limit (docs/theory.md). Default false.
  std::optional<bool> finite_dh;
};

/// Finite-width Monte Carlo (docs/simulate.md). The numbers depend on spec, samples, seed,
/// backend, precision, weights_sampling and input_kernel only, never on threads.
struct SimulateSettings {
  int samples = 64;             ///< independent random stacks, 1..65536
  std::uint64_t seed = 0;       ///< key of every random stream
  std::string backend = "cpu";  ///< "reference", "cpu" or "cuda" (when built and a device exists)
  std::string precision;        ///< "" = the backend's default; "double", "float", "tf32" (cuda)
  /// Worker threads. The library's default is 1 so that a host with its own thread pool is not
  /// oversubscribed; 0 = every hardware thread.
  int threads = 1;
  std::string weights_sampling;  ///< "" = automatic, "explicit" or "conditional"
  /// Backend "cuda": path of the plug-in libsigprop_cuda.so; "" = search beside the library,
  /// ../lib, ../lib/sigprop, then the dynamic loader's path (docs/cuda.md). The library never
  /// reads $SIGPROP_CUDA_PLUGIN (the command line does).
  std::string cuda_plugin;
  /// "" = "sampled" (MODEL.md §1) or "exact": each sample's input X_0 has exactly the kernel
  /// q0 ((1-rho0) I + rho0 11^T) (docs/simulate.md; cpu and reference only, width >= tokens + 1).
  std::string input_kernel;
};

/// Depth limits (docs/ode.md).
enum class OdeKind { Continuum, Clustering, ShapedSde };
struct OdeSettings {
  OdeKind kind = OdeKind::Continuum;
  std::optional<double> abs_tol, rel_tol;  ///< Dormand-Prince tolerances (continuum, clustering)
  std::optional<std::int64_t> max_evals;   ///< right-hand-side evaluations per solve
  std::optional<std::uint64_t> seed;       ///< clustering random start, shaped-sde noise and networks
  // continuum
  std::optional<int> attn_samples;  ///< logit draws for 1/sqrt(dh) attention
  std::optional<int> steps;         ///< RK4 steps when the attention integral is sampled
  std::optional<int> quad_order;    ///< Gauss-Legendre points per piece
  // clustering
  std::optional<std::string> variant;  ///< "sa" (softmax) or "usa" (unnormalised)
  std::optional<double> beta;          ///< inverse temperature >= 0
  std::optional<double> t_end;         ///< final time
  std::optional<int> points;           ///< output intervals between 0 and t_end
  std::optional<bool> equiangular;     ///< equiangular start with correlation input.rho0
  // shaped-sde
  std::optional<std::string> model;  ///< "mlp" or "attn"
  std::optional<double> shape_c;     ///< mlp: slopes 1 +- c/sqrt(width)
  std::optional<double> gamma2;      ///< attn: branch weight gamma^2 (a variance share)
  std::optional<double> tau0;        ///< attn: logits divided by tau0 sqrt(width)
  std::optional<int> key_dim;        ///< attn: query/key width (0 = width)
  std::optional<int> paths;          ///< Euler-Maruyama paths
  std::optional<int> samples;        ///< finite-width networks (0 = none)
  std::optional<int> substeps;       ///< Euler-Maruyama steps per layer
};

/// Singular values of the input-output Jacobian J_l = dx_l/dx_0 (docs/spectrum.md), as
/// `sigprop spectrum`: free probability (engine "theory": dense stacks with norm = "none") or
/// finite-width Monte Carlo (engine "simulate": any stack). Unset optionals take the command
/// line's defaults.
struct SpectrumSettings {
  std::string engine = "theory";  ///< "theory" or "simulate" (sigprop spectrum --engine)
  /// Density grid: grid_points evenly spaced points from grid_lo to grid_hi (--grid lo:hi:n; set
  /// both ends or neither). Without the ends, grid_points (default 200) points up to mean + 6 sd
  /// of the theory's J_L J_L^T, or, for a simulated stack the theory does not cover, up to 1.25 x
  /// the largest squared singular value of one pilot sample.
  std::optional<double> grid_lo, grid_hi;
  std::optional<int> grid_points;
  // theory
  std::optional<int> panels;  ///< Gauss-Legendre panels for the law of phi'(h)^2 (--panels)
  // simulate
  std::optional<int> samples;                  ///< independent stacks (default 16)
  std::optional<std::uint64_t> seed;           ///< the streams of simulate (default 0)
  std::optional<std::string> map;              ///< "token" (one token's d x d Jacobian) or "full"
  std::optional<int> token;                    ///< the token of map "token" (default: the last)
  std::optional<std::string> jacobian_method;  ///< "auto", "explicit" or "backward" (--method)
  /// Worker threads (the library's default is 1, the command line's 0 = every hardware thread);
  /// the numbers never depend on it.
  int threads = 1;
};

/// Every metric of MODEL.md §2 in the d -> infinity limit, layers 0..spec.depth.
/// @param progress optional; returning false cancels: CancelledError, no Profile.
SIGPROP_API Profile theory(const StackSpec& spec, const TheorySettings& settings = {},
                           const ProgressFn& progress = nullptr);
/// Ensemble mean and standard error (`_se`) of every metric over settings.samples random stacks.
/// Identical to `sigprop simulate` with the same spec, samples, seed, backend and precision.
SIGPROP_API Profile simulate(const StackSpec& spec, const SimulateSettings& settings = {},
                             const ProgressFn& progress = nullptr);
/// Continuum ODE, token-clustering ODE or shaped-network SDE, as `sigprop ode --kind`.
/// Progress (and cancellation): continuum and clustering per output time, shaped-sde per path.
SIGPROP_API Profile ode(const StackSpec& spec, const OdeSettings& settings = {}, const ProgressFn& progress = nullptr);

/// Per layer the mean and variance of the squared singular values of J_l (sv2_mean, sv2_var, with
/// `_se` for simulate), the density of J_L's in extras_json()["density"] (theory: product stacks
/// only; a residual stack gets a warning instead). Equal to `sigprop spectrum --json` with the
/// same spec and settings. Progress: per density grid point (theory), per sample (simulate).
SIGPROP_API Profile spectrum(const StackSpec& spec, const SpectrumSettings& settings = {},
                             const ProgressFn& progress = nullptr);

// ---------------------------------------------------------------------------------------------
// Depth returns (docs/theory.md "Depth returns")

/// The return of depth predicted from a stack's per-layer angular distance: r_l = ang_dist_l /
/// max_k ang_dist_k, effective depth D = sum_l r_l, D over depths 1, 2, 4, ..., L, and the knee:
/// the last depth before the first doubling whose added layers return, each, less than
/// `fraction` of what the first doubling's added layer returned.
struct DepthReturns {
  std::vector<double> layer_return;            ///< r_l of the depth-L stack, l = 1..L (element l - 1)
  std::vector<int> depth;                      ///< 1, 2, 4, ..., L (L last)
  std::vector<double> effective_depth;         ///< D at each depth (NaN where the stack diverged)
  std::vector<double> return_per_added_layer;  ///< (D(d') - D(d)) / (d' - d), one per step of depth
  bool knee_found = false;
  int knee_depth = 0;  ///< the predicted knee; 0 when knee_found is false
  double fraction = 0.25;
  std::string rule;   ///< the knee rule in words
  std::string curve;  ///< "prefix" (one run), "rerun" (one theory run per depth), or a single depth
  std::string note;   ///< why the curve stops early (a diverged stack), "" otherwise
};

/// From a profile: the theory engine's extra "depth_returns" when it has one (the full curve,
/// fraction 0.25), else computed from its ang_dist column (any engine; for a spec that depends
/// on L, branch_scale 1/sqrt(L) or 1/sqrt(2L) or deepnorm, only the profile's own depth).
/// ConfigError when the profile has no ang_dist column.
SIGPROP_API DepthReturns depth_returns(const Profile& profile);
/// From the theory: one run at spec.depth, plus one per depth 1, 2, 4, ... < L when the spec
/// depends on L. ConfigError for a fraction outside (0, 1) or a bad spec or settings.
SIGPROP_API DepthReturns depth_returns(const StackSpec& spec, const TheorySettings& settings = {},
                                       double fraction = 0.25);

// ---------------------------------------------------------------------------------------------
// Checkpoints against their predictions (docs/validate.md)

/// `sigprop validate`'s options with the same defaults (unset optionals: the command line's).
struct ValidateSettings {
  std::string checkpoint;              ///< required: a sigprop safetensors checkpoint or a Hugging Face folder
  std::string corpus;                  ///< required: text file; its bytes are the tokens of the byte-level model
  std::optional<std::int64_t> tokens;  ///< tokens measured in all (default 8192; tokens / seq_len sequences, >= 2)
  std::optional<int> seq_len;          ///< tokens per sequence (default 0 = the model's context)
  std::optional<int> ensemble;         ///< freshly initialised models (default 32; 0 = no init ensemble)
  std::optional<int> samples;          ///< Monte Carlo samples of the simulate prediction (default 64; 0 = none)
  bool theory = true;                  ///< run the theory prediction
  std::uint64_t seed = 0;              ///< Monte Carlo seed; the ensemble uses seed + 1 .. seed + ensemble
  /// Worker threads (the library's default is 1; 0 = every hardware thread); never changes a number.
  int threads = 1;
  std::string precision;  ///< the model's arithmetic: "" = "float", "float" or "double"
};

/// The result of validate_checkpoint: the measured profile, the predictions that ran, the
/// agreement table and notes. Owns its data; copyable and movable.
class SIGPROP_API Validation {
 public:
  struct Impl;
  explicit Validation(std::unique_ptr<Impl> impl);
  Validation(const Validation& other);
  Validation(Validation&& other) noexcept;
  Validation& operator=(const Validation& other);
  Validation& operator=(Validation&& other) noexcept;
  ~Validation();

  /// The checkpoint's metrics on the corpus (engine "measured"): mean over sequences and `_se`;
  /// extras_json() holds "loss" and "loss_se" (nats per token).
  [[nodiscard]] const Profile& measured() const;
  /// The predictions; nullptr when one did not run (settings, or an architecture the theory
  /// does not cover: notes() says why). Valid while this Validation lives.
  [[nodiscard]] const Profile* theory() const;
  [[nodiscard]] const Profile* simulate() const;
  [[nodiscard]] const Profile* init_ensemble() const;
  /// The model's configuration as a JSON object.
  [[nodiscard]] std::string model_json() const;
  /// Per prediction, metric and layer: diff, z and z_pi (docs/validate.md), a JSON array.
  [[nodiscard]] std::string agreement_json() const;
  /// Per prediction and metric: largest |z|, fraction within 3, a JSON array.
  [[nodiscard]] std::string summary_json() const;
  [[nodiscard]] const std::vector<std::string>& notes() const;
  /// Each measured sequence's mean cross-entropy, in corpus order.
  [[nodiscard]] std::span<const double> sequence_loss() const;
  /// Everything, as `sigprop validate --json` writes it (that file is to_json(2) and a newline;
  /// indent < 0: one line).
  [[nodiscard]] std::string to_json(int indent = 2) const;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Loads the checkpoint and corpus, measures the checkpoint and runs the predictions, as
/// `sigprop validate`. ConfigError naming the settings field ("ValidateSettings.corpus: ...")
/// for bad settings and unreadable or unusable files. Progress: the measurement, then theory,
/// simulate (per sample) and the ensemble (per model), each an equal share; returning false
/// throws CancelledError.
SIGPROP_API Validation validate_checkpoint(const ValidateSettings& settings, const ProgressFn& progress = nullptr);

// ---------------------------------------------------------------------------------------------
// Reports (docs/report.md)

/// `sigprop report`'s options (one process; the command line adds MPI ranks).
struct ReportSettings {
  std::string out;  ///< required: output folder (created; finished cells in it are reused)
  /// Cells run in parallel (0 = every hardware thread).
  int jobs = 1;
  /// Threads inside one Monte Carlo cell (0 = every hardware thread / jobs); never changes a number.
  int threads = 1;
  /// gnuplot program (a name on PATH or a path); "" = "gnuplot". The library never reads
  /// $SIGPROP_GNUPLOT (the command line does).
  std::string gnuplot;
  /// false: write data, tables and HTML without drawing figures.
  bool figures = true;
  /// true: run nothing; render what is done so far in out/cells into out/snapshot/ (its cells/
  /// a link to ../cells), safe while another process or MPI ranks run the report (docs/report.md
  /// "Snapshots"). The result's cells are the cells shown, jobs the jobs planned so far, and
  /// jobs_reused those done. One process only (not under mpirun).
  bool snapshot = false;
};

struct ReportResult {
  std::string out, index_html, report_md;    ///< the output folder and the two pages in it
  int cells = 0;                             ///< grid points
  int jobs = 0;                              ///< cells x engines
  int jobs_reused = 0;                       ///< jobs already done in `out` (resumed), not run again
  std::vector<std::string> figures_drawn;    ///< stems under figures/ with .svg and .png
  std::vector<std::string> figures_missing;  ///< stems not drawn (no gnuplot, figures = false, ...)
  std::string gnuplot_problem;               ///< why figures are missing ("" when none)
};

/// Runs the sweep of a report config file and writes the report folder, as `sigprop report`.
/// ConfigError naming the key and file for a bad config, or the settings field; ConfigError when
/// another run holds the output folder. Progress: fraction of the jobs done; returning false
/// stops the running jobs, keeps the finished ones in out/cells (a second call resumes) and
/// throws CancelledError.
SIGPROP_API ReportResult report(const std::string& config_path, const ReportSettings& settings,
                                const ProgressFn& progress = nullptr);
/// As report() on config text; `origin` names it in error messages.
SIGPROP_API ReportResult report_from_toml(std::string_view text, const ReportSettings& settings,
                                          const ProgressFn& progress = nullptr,
                                          const std::string& origin = "<report config>");
/// The built-in default report config (`sigprop report --print-default`) as TOML.
SIGPROP_API std::string default_report_config();

// ---------------------------------------------------------------------------------------------
// Memory

/// The memory one engine run may plan to allocate, in bytes (0 = no limit, the library's
/// default); a run over it throws ConfigError naming the keys that drive the size.
/// Process-wide: set it before starting runs. The command line sets MemAvailable.
SIGPROP_API void set_memory_limit(std::uint64_t bytes);
SIGPROP_API std::uint64_t memory_limit();

/// The library's version, "major.minor.patch".
SIGPROP_API std::string version();

}  // namespace sigprop::api
