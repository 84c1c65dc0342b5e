/* sigprop.h: the C ABI of libsigprop (docs/library.md, "C ABI"). Plain C99, also valid C++.
 *
 * Built over the C++ facade (sigprop/api.hpp) for C, Fortran (iso_c_binding), Julia ccall and
 * Rust FFI: only int32_t, int64_t, double, char pointers, opaque handle pointers and one function
 * pointer type cross it; no struct by value, no varargs, no union, no bool, no enum-typed
 * argument (statuses are int32_t).
 *
 * Errors. Every function that can fail returns a sigprop_status; SIGPROP_OK is 0. On failure
 * sigprop_last_error() holds a message naming the spec key, settings key, metric or file, and
 * the out-arguments are left as they were (except the size that a too-small buffer reports, see
 * "Buffers"). No C++ exception ever crosses this interface.
 *
 * Ownership. A handle that a function creates (sigprop_spec, sigprop_settings, sigprop_profile,
 * sigprop_validation, sigprop_report_result) belongs to the caller, who frees it with the
 * matching *_free; *_free(NULL) does nothing. Functions never keep a pointer the caller passed
 * in beyond the call. Text and numbers come back in caller-owned buffers (see "Buffers").
 *
 * Buffers. A function that returns text takes (char* buf, int64_t cap, int64_t* needed): it
 * stores in *needed (when needed is not NULL) the size in bytes of the text INCLUDING its
 * terminating NUL. With cap == 0 (buf may be NULL) it writes nothing and returns SIGPROP_OK: the
 * sizing call. With cap >= *needed it writes the text and the NUL. With 0 < cap < *needed it
 * writes nothing and returns SIGPROP_E_ARGUMENT. sigprop_profile_values and
 * sigprop_validation_sequence_loss work the same way in doubles (cap and *n count doubles).
 *
 * Threads. Calls on different threads with different handles are independent; a handle may be
 * read (const arguments) from several threads at once, but not written (sigprop_spec_set,
 * sigprop_settings_set, *_free) while anything else uses it. The last error is per thread.
 *
 * Progress and cancellation. Engine calls take an optional sigprop_progress_fn, called on the
 * calling thread or on one worker thread at a time (never concurrently) with a fraction in
 * [0, 1] that never decreases and a short NUL-terminated stage text ("layer 12/24"), valid
 * during the call only. Return nonzero to go on, 0 to cancel: the engine stops at its next check
 * and the call returns SIGPROP_E_CANCELLED with no result.
 */
#ifndef SIGPROP_SIGPROP_H
#define SIGPROP_SIGPROP_H

#include <stdint.h>

#if defined(_WIN32)
#define SIGPROP_C_API
#else
#define SIGPROP_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** The version of this interface; sigprop_abi_version() returns the library's. A program built
 *  against one ABI version must not call a library with another. */
#define SIGPROP_ABI_VERSION 1

/** Status codes (int32_t). */
typedef int32_t sigprop_status;
#define SIGPROP_OK 0
#define SIGPROP_E_CONFIG 1    /**< a spec value or setting unknown, mistyped or out of range */
#define SIGPROP_E_IO 2        /**< a file that cannot be read */
#define SIGPROP_E_NUMERICAL 3 /**< a computation that cannot proceed */
#define SIGPROP_E_CANCELLED 4 /**< the progress callback returned 0 */
#define SIGPROP_E_CUDA 5      /**< CUDA failure or no device for backend "cuda" */
#define SIGPROP_E_MEMORY 6    /**< out of memory (std::bad_alloc or the library's memory limit) */
#define SIGPROP_E_ARGUMENT 7  /**< a NULL handle, a buffer too small, an index out of range */
#define SIGPROP_E_INTERNAL 8  /**< anything else (a bug: please report the message) */

/** Opaque handles. */
typedef struct sigprop_spec sigprop_spec;                   /**< a validated stack spec (MODEL.md §1) */
typedef struct sigprop_settings sigprop_settings;           /**< one engine's settings */
typedef struct sigprop_profile sigprop_profile;             /**< an engine's result: rows x metric columns */
typedef struct sigprop_validation sigprop_validation;       /**< sigprop_validate's result */
typedef struct sigprop_report_result sigprop_report_result; /**< sigprop_report's result */

/** Progress callback: return nonzero to go on, 0 to cancel. `user` is the pointer given to the
 *  engine call; `stage` is valid during the call only. Must not unwind (no longjmp, no throw). */
typedef int32_t (*sigprop_progress_fn)(void* user, double fraction, const char* stage);

/* ---------------------------------------------------------------------------------------------
 * Library */

/** SIGPROP_ABI_VERSION of the library that is loaded. */
SIGPROP_C_API int32_t sigprop_abi_version(void);
/** "major.minor.patch"; static storage, never freed. */
SIGPROP_C_API const char* sigprop_version(void);
/** The message of the last failed call on this thread ("" after a successful one). Owned by the
 *  library, valid until the next sigprop_ call on this thread; never NULL. */
SIGPROP_C_API const char* sigprop_last_error(void);
/** "SIGPROP_OK", "SIGPROP_E_CONFIG", ...; "unknown status" otherwise. Static storage. */
SIGPROP_C_API const char* sigprop_status_name(sigprop_status status);

/* ---------------------------------------------------------------------------------------------
 * Specs. Every function that creates one stores a new handle in *out (caller frees it with
 * sigprop_spec_free) and leaves *out untouched on failure. */

/** The built-in default spec (README.md, examples/default.toml). */
SIGPROP_C_API sigprop_status sigprop_spec_default(sigprop_spec** out);
/** Parses and validates TOML text (NUL-terminated). `origin` (NULL: "<spec>") names the text in
 *  error messages. SIGPROP_E_CONFIG naming the key when invalid. */
SIGPROP_C_API sigprop_status sigprop_spec_from_toml(const char* text, const char* origin, sigprop_spec** out);
/** Reads a TOML spec file: SIGPROP_E_IO when unreadable, SIGPROP_E_CONFIG when invalid. */
SIGPROP_C_API sigprop_status sigprop_spec_from_file(const char* path, sigprop_spec** out);
/** Applies one override "table.key=value" (the command line's --set spelling, e.g.
 *  "stack.depth=48", "stack.qk_scale=1/dh") and validates; the spec is unchanged on failure. */
SIGPROP_C_API sigprop_status sigprop_spec_set(sigprop_spec* spec, const char* assignment);
/** The spec as TOML (every key; round-trips through sigprop_spec_from_toml). Buffer rules above. */
SIGPROP_C_API sigprop_status sigprop_spec_to_toml(const sigprop_spec* spec, char* buf, int64_t cap, int64_t* needed);
/** The spec as one line of JSON {"stack": {...}, "init": {...}, "input": {...}}. */
SIGPROP_C_API sigprop_status sigprop_spec_to_json(const sigprop_spec* spec, char* buf, int64_t cap, int64_t* needed);
/** A deep copy in *out (caller frees). */
SIGPROP_C_API sigprop_status sigprop_spec_copy(const sigprop_spec* spec, sigprop_spec** out);
/** Frees a spec; NULL is a no-op. */
SIGPROP_C_API void sigprop_spec_free(sigprop_spec* spec);

/* ---------------------------------------------------------------------------------------------
 * Settings: one handle type for every engine, made for one of them and filled with string
 * key/value pairs. Unset keys take the engine's own default (docs/library.md lists the keys). */

/** New settings for `engine`: "theory", "simulate", "ode", "spectrum", "validate" or "report";
 *  *out (caller frees). */
SIGPROP_C_API sigprop_status sigprop_settings_new(const char* engine, sigprop_settings** out);
/** Sets `key` to `value` (both NUL-terminated; numbers in C syntax, booleans "true"/"false").
 *  SIGPROP_E_CONFIG naming the key when the key is unknown for this engine or the value does not
 *  parse; range checks happen when the engine starts. The settings are unchanged on failure. */
SIGPROP_C_API sigprop_status sigprop_settings_set(sigprop_settings* settings, const char* key, const char* value);
/** The engine the settings were made for, into a caller buffer (buffer rules above). */
SIGPROP_C_API sigprop_status sigprop_settings_engine(const sigprop_settings* settings, char* buf, int64_t cap,
                                                     int64_t* needed);
/** A deep copy in *out (caller frees). */
SIGPROP_C_API sigprop_status sigprop_settings_copy(const sigprop_settings* settings, sigprop_settings** out);
/** Frees settings; NULL is a no-op. */
SIGPROP_C_API void sigprop_settings_free(sigprop_settings* settings);

/* ---------------------------------------------------------------------------------------------
 * Engines. `settings` NULL means the engine's defaults; settings made for another engine are
 * SIGPROP_E_ARGUMENT. `progress` may be NULL. On success *out holds a new profile (caller frees
 * with sigprop_profile_free); on failure *out is untouched. The numbers equal the command line's
 * (`sigprop theory --json` etc.) for the same spec and settings. */

/** Infinite-width theory (docs/theory.md), layers 0..depth. Keys: attn_samples, seed,
 *  error_batches, attn_method, quad_order, finite_dh ("true"/"false": qk_scale = 1/dh at the
 *  spec's d_h instead of the uniform d_h -> infinity limit). */
SIGPROP_C_API sigprop_status sigprop_theory(const sigprop_spec* spec, const sigprop_settings* settings,
                                            sigprop_progress_fn progress, void* user, sigprop_profile** out);
/** Finite-width Monte Carlo (docs/simulate.md): ensemble means and `_se` columns. Keys: samples,
 *  seed, backend, precision, threads (default 1; 0 = every hardware thread), weights_sampling,
 *  cuda_plugin (backend "cuda": the plug-in's path; docs/cuda.md), input_kernel ("sampled" or
 *  "exact": every sample's input has exactly the kernel K0; cpu and reference only). */
SIGPROP_C_API sigprop_status sigprop_simulate(const sigprop_spec* spec, const sigprop_settings* settings,
                                              sigprop_progress_fn progress, void* user, sigprop_profile** out);
/** Depth limits (docs/ode.md). Keys: kind ("continuum", "clustering", "shaped-sde"), abs_tol,
 *  rel_tol, max_evals, seed, attn_samples, steps, quad_order, variant, beta, t_end, points,
 *  equiangular, model, shape_c, gamma2, tau0, key_dim, paths, samples, substeps. */
SIGPROP_C_API sigprop_status sigprop_ode(const sigprop_spec* spec, const sigprop_settings* settings,
                                         sigprop_progress_fn progress, void* user, sigprop_profile** out);
/** Input-output Jacobian spectrum (docs/spectrum.md). Keys: engine ("theory", "simulate"),
 *  grid_lo, grid_hi, grid_points, panels, samples, seed, map, token, jacobian_method, threads. */
SIGPROP_C_API sigprop_status sigprop_spectrum(const sigprop_spec* spec, const sigprop_settings* settings,
                                              sigprop_progress_fn progress, void* user, sigprop_profile** out);

/* ---------------------------------------------------------------------------------------------
 * Profiles. All take a const profile: several threads may read one at once. */

/** Rows (depth + 1 for theory and simulate; output times for the clustering ODE) in *n. */
SIGPROP_C_API sigprop_status sigprop_profile_rows(const sigprop_profile* profile, int64_t* n);
/** Number of metric columns in *n. */
SIGPROP_C_API sigprop_status sigprop_profile_metric_count(const sigprop_profile* profile, int64_t* n);
/** Name of metric column i (0-based; "q", "rho", ..., "<name>_se"); SIGPROP_E_ARGUMENT when i is
 *  out of range. Buffer rules above. */
SIGPROP_C_API sigprop_status sigprop_profile_metric_name(const sigprop_profile* profile, int64_t i, char* buf,
                                                         int64_t cap, int64_t* needed);
/** *yes = 1 when the profile has the metric column `name`, else 0. */
SIGPROP_C_API sigprop_status sigprop_profile_has_metric(const sigprop_profile* profile, const char* name, int32_t* yes);
/** One column over all rows into buf (cap doubles): *n = rows. NaN where undefined (layer 0 of
 *  update_ratio and ang_dist, diverged layers). cap 0: sizing call. SIGPROP_E_CONFIG naming the
 *  metric and the available ones when `name` is unknown. */
SIGPROP_C_API sigprop_status sigprop_profile_values(const sigprop_profile* profile, const char* name, double* buf,
                                                    int64_t cap, int64_t* n);
/** Engine name: "theory", "simulate", "continuum", "clustering", "shaped-sde",
 *  "spectrum-theory" or "spectrum-simulate". */
SIGPROP_C_API sigprop_status sigprop_profile_engine(const sigprop_profile* profile, char* buf, int64_t cap,
                                                    int64_t* needed);
/** The whole profile as `sigprop <engine> --json` writes it (less the file's final newline);
 *  indent < 0: one line. */
SIGPROP_C_API sigprop_status sigprop_profile_to_json(const sigprop_profile* profile, int32_t indent, char* buf,
                                                     int64_t cap, int64_t* needed);
/** As `--csv` writes it. */
SIGPROP_C_API sigprop_status sigprop_profile_to_csv(const sigprop_profile* profile, char* buf, int64_t cap,
                                                    int64_t* needed);
/** Engine settings (samples, seed, backend, ...) as a JSON object. */
SIGPROP_C_API sigprop_status sigprop_profile_settings_json(const sigprop_profile* profile, char* buf, int64_t cap,
                                                           int64_t* needed);
/** Engine-specific summaries (fixed points, spectrum density, ...) as a JSON object. */
SIGPROP_C_API sigprop_status sigprop_profile_extras_json(const sigprop_profile* profile, char* buf, int64_t cap,
                                                         int64_t* needed);
/** The resolved spec the engine ran, as TOML. */
SIGPROP_C_API sigprop_status sigprop_profile_spec_toml(const sigprop_profile* profile, char* buf, int64_t cap,
                                                       int64_t* needed);
/** The resolved spec as a new handle in *out (caller frees). */
SIGPROP_C_API sigprop_status sigprop_profile_spec(const sigprop_profile* profile, sigprop_spec** out);
/** Number of warnings ("non-finite value first at layer 37", ...) in *n. */
SIGPROP_C_API sigprop_status sigprop_profile_warning_count(const sigprop_profile* profile, int64_t* n);
/** Warning i (0-based) into a caller buffer. */
SIGPROP_C_API sigprop_status sigprop_profile_warning(const sigprop_profile* profile, int64_t i, char* buf, int64_t cap,
                                                     int64_t* needed);
/** Frees a profile; NULL is a no-op. */
SIGPROP_C_API void sigprop_profile_free(sigprop_profile* profile);

/* ---------------------------------------------------------------------------------------------
 * Checkpoints against their predictions (docs/validate.md), as `sigprop validate`. */

/** Measures a checkpoint on a corpus and runs the predictions. `settings` from
 *  sigprop_settings_new("validate"); keys: checkpoint and corpus (required: file paths), tokens,
 *  seq_len, ensemble, samples, theory ("true"/"false"), seed, threads (default 1), precision.
 *  SIGPROP_E_CONFIG naming the setting for bad settings and unreadable or unusable files. On
 *  success *out holds a new result (caller frees with sigprop_validation_free). */
SIGPROP_C_API sigprop_status sigprop_validate(const sigprop_settings* settings, sigprop_progress_fn progress,
                                              void* user, sigprop_validation** out);
/** One of the result's profiles as a new handle in *out (caller frees): `which` is "measured",
 *  "theory", "simulate" or "init_ensemble". *out = NULL (and SIGPROP_OK) when that prediction did
 *  not run (settings, or an architecture the theory does not cover: the notes say why). */
SIGPROP_C_API sigprop_status sigprop_validation_profile(const sigprop_validation* validation, const char* which,
                                                        sigprop_profile** out);
/** Everything, as `sigprop validate --json` writes it (less the final newline); indent < 0: one line. */
SIGPROP_C_API sigprop_status sigprop_validation_to_json(const sigprop_validation* validation, int32_t indent, char* buf,
                                                        int64_t cap, int64_t* needed);
/** The model's configuration as a JSON object. */
SIGPROP_C_API sigprop_status sigprop_validation_model_json(const sigprop_validation* validation, char* buf, int64_t cap,
                                                           int64_t* needed);
/** Per prediction, metric and layer: diff, z and z_pi (docs/validate.md), a JSON array. */
SIGPROP_C_API sigprop_status sigprop_validation_agreement_json(const sigprop_validation* validation, char* buf,
                                                               int64_t cap, int64_t* needed);
/** Per prediction and metric: largest |z|, fraction within 3, a JSON array. */
SIGPROP_C_API sigprop_status sigprop_validation_summary_json(const sigprop_validation* validation, char* buf,
                                                             int64_t cap, int64_t* needed);
/** Number of notes in *n. */
SIGPROP_C_API sigprop_status sigprop_validation_note_count(const sigprop_validation* validation, int64_t* n);
/** Note i (0-based) into a caller buffer. */
SIGPROP_C_API sigprop_status sigprop_validation_note(const sigprop_validation* validation, int64_t i, char* buf,
                                                     int64_t cap, int64_t* needed);
/** Each measured sequence's mean cross-entropy (nats per token), in corpus order: *n doubles
 *  (buffer rules above, in doubles). */
SIGPROP_C_API sigprop_status sigprop_validation_sequence_loss(const sigprop_validation* validation, double* buf,
                                                              int64_t cap, int64_t* n);
/** Frees a validation result; NULL is a no-op. */
SIGPROP_C_API void sigprop_validation_free(sigprop_validation* validation);

/* ---------------------------------------------------------------------------------------------
 * Reports (docs/report.md), as `sigprop report` in one process. */

/** Runs the sweep of the report config file `config_path` and writes the report folder.
 *  `settings` from sigprop_settings_new("report"); keys: out (required: the output folder),
 *  jobs, threads, gnuplot, figures ("true"/"false"), snapshot ("true": run nothing, render what
 *  out/cells holds so far into out/snapshot/, as `sigprop report --snapshot`). SIGPROP_E_CONFIG naming the key and file
 *  for a bad config, or the setting. Cancelling keeps the finished jobs (a second call resumes).
 *  On success *out holds a new result (caller frees with sigprop_report_result_free). */
SIGPROP_C_API sigprop_status sigprop_report(const char* config_path, const sigprop_settings* settings,
                                            sigprop_progress_fn progress, void* user, sigprop_report_result** out);
/** As sigprop_report on config text; `origin` (NULL: "<report config>") names it in errors. */
SIGPROP_C_API sigprop_status sigprop_report_from_toml(const char* text, const char* origin,
                                                      const sigprop_settings* settings, sigprop_progress_fn progress,
                                                      void* user, sigprop_report_result** out);
/** The result as a JSON object: out, index_html, report_md (paths), cells, jobs, jobs_reused,
 *  figures_drawn, figures_missing (arrays of names), gnuplot_problem. Buffer rules above. */
SIGPROP_C_API sigprop_status sigprop_report_result_json(const sigprop_report_result* result, char* buf, int64_t cap,
                                                        int64_t* needed);
/** Frees a report result; NULL is a no-op. */
SIGPROP_C_API void sigprop_report_result_free(sigprop_report_result* result);
/** The built-in default report config (`sigprop report --print-default`) as TOML. */
SIGPROP_C_API sigprop_status sigprop_default_report_config(char* buf, int64_t cap, int64_t* needed);

/* ---------------------------------------------------------------------------------------------
 * Memory */

/** The memory one engine run may plan to allocate, in bytes (0 = no limit, the library's
 *  default); a run over it returns SIGPROP_E_MEMORY naming the keys that drive the size.
 *  Process-wide: set it before starting runs. Negative: SIGPROP_E_ARGUMENT. */
SIGPROP_C_API sigprop_status sigprop_set_memory_limit(int64_t bytes);
/** The current limit in *bytes (0 = none). */
SIGPROP_C_API sigprop_status sigprop_memory_limit(int64_t* bytes);

#ifdef __cplusplus
}
#endif

#endif /* SIGPROP_SIGPROP_H */
