#pragma once
/// @file Profile: what every engine returns (MODEL.md §2-3). One row per layer
/// l = 0..L, one column per metric (and `<name>_se` for stochastic engines),
/// NaN where a metric is undefined (update_ratio, ang_dist at l = 0).
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/files.hpp"  // write_file_atomic
#include "core/spec.hpp"

namespace sigprop {

/// Metric names of MODEL.md §2, in the order they are written.
const std::vector<std::string>& metric_names();

struct Profile {
  StackSpec spec;
  std::string engine;                                  ///< "theory", "simulate", ...
  std::string version;                                 ///< sigprop version that produced it
  nlohmann::json settings = nlohmann::json::object();  ///< engine settings (samples, seed, backend, ...)
  std::vector<std::string> columns;                    ///< metric columns, e.g. "q", "q_se"
  std::vector<std::vector<double>> rows;               ///< rows[l][c], l = 0..depth
  std::vector<std::string> warnings;                   ///< e.g. "non-finite value first at layer 37"
  nlohmann::json extras = nlohmann::json::object();    ///< engine-specific summaries (fixed points, ...)

  /// Makes an all-NaN profile with the given columns for spec.depth + 1 layers.
  static Profile make(const StackSpec& spec, std::string engine, std::vector<std::string> columns);
  [[nodiscard]] int layers() const { return static_cast<int>(rows.size()); }
  /// Column index; throws Error for an unknown name.
  [[nodiscard]] int column(const std::string& name) const;
  [[nodiscard]] bool has(const std::string& name) const;
  double& at(int layer, const std::string& name) { return rows.at(layer).at(column(name)); }
  [[nodiscard]] double at(int layer, const std::string& name) const { return rows.at(layer).at(column(name)); }
  /// One metric over layers 0..L.
  [[nodiscard]] std::vector<double> series(const std::string& name) const;

  [[nodiscard]] nlohmann::json to_json() const;
  static Profile from_json(const nlohmann::json& j);
  /// CSV: leading '#' lines carry engine, version, settings and the spec as JSON, the warnings,
  /// and the extra "depth_returns" as JSON when there is one (the theory engine's);
  /// then a header "layer,<columns...>" and one row per layer; NaN is written empty.
  [[nodiscard]] std::string to_csv() const;
};

/// Reads a Profile JSON file. Throws IoError naming the file.
Profile read_profile_json(const std::filesystem::path& path);

}  // namespace sigprop
