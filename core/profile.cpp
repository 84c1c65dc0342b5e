#include "core/profile.hpp"

#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "sigprop/version.hpp"

namespace sigprop {

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names{"q", "rho", "res", "eff_rank", "update_ratio", "ang_dist", "grad_var"};
  return names;
}

Profile Profile::make(const StackSpec& spec, std::string engine, std::vector<std::string> columns) {
  Profile p;
  p.spec = spec;
  p.engine = std::move(engine);
  p.version = kVersion;
  p.columns = std::move(columns);
  p.rows.assign(spec.depth + 1, std::vector<double>(p.columns.size(), std::nan("")));
  return p;
}

int Profile::column(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  throw Error(fmt::format("profile from engine \"{}\" has no column \"{}\"", engine, name));
}

bool Profile::has(const std::string& name) const {
  for (auto& c : columns)
    if (c == name) return true;
  return false;
}

std::vector<double> Profile::series(const std::string& name) const {
  int c = column(name);
  std::vector<double> out;
  out.reserve(rows.size());
  for (auto& r : rows) out.push_back(r[c]);
  return out;
}

nlohmann::json Profile::to_json() const {
  nlohmann::json j;
  j["format"] = "sigprop-profile";
  j["format_version"] = 1;
  j["engine"] = engine;
  j["version"] = version;
  j["settings"] = settings;
  j["spec"] = spec_to_json(spec);
  j["columns"] = columns;
  j["warnings"] = warnings;
  j["extras"] = extras;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < rows.size(); ++l) {
    nlohmann::json row;
    row["layer"] = l;
    for (size_t c = 0; c < columns.size(); ++c) {
      double v = rows[l][c];
      // JSON has no NaN/Inf: undefined entries are null; non-finite results are
      // also null and flagged in "warnings" by the engine that produced them.
      row[columns[c]] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
    }
    layers.push_back(row);
  }
  j["layers"] = layers;
  return j;
}

Profile Profile::from_json(const nlohmann::json& j) {
  try {
    if (j.value("format", "") != "sigprop-profile") throw IoError("not a sigprop profile (missing \"format\")");
    Profile p;
    p.engine = j.at("engine").get<std::string>();
    p.version = j.at("version").get<std::string>();
    p.settings = j.value("settings", nlohmann::json::object());
    p.spec = spec_from_json(j.at("spec"));
    p.columns = j.at("columns").get<std::vector<std::string>>();
    p.warnings = j.value("warnings", std::vector<std::string>{});
    p.extras = j.value("extras", nlohmann::json::object());
    for (auto& row : j.at("layers")) {
      std::vector<double> r;
      for (auto& c : p.columns) {
        auto& v = row.at(c);
        r.push_back(v.is_null() ? std::nan("") : v.get<double>());
      }
      p.rows.push_back(std::move(r));
    }
    if (static_cast<int>(p.rows.size()) != p.spec.depth + 1)
      throw IoError(
          fmt::format("profile has {} layers, spec depth {} needs {}", p.rows.size(), p.spec.depth, p.spec.depth + 1));
    return p;
  } catch (const nlohmann::json::exception& e) {
    throw IoError(fmt::format("malformed profile JSON: {}", e.what()));
  }
}

std::string Profile::to_csv() const {
  std::ostringstream o;
  o << "# sigprop profile, engine=" << engine << ", version=" << version << "\n";
  o << "# settings: " << settings.dump() << "\n";
  o << "# spec: " << spec_to_json(spec).dump() << "\n";
  for (auto& w : warnings) o << "# warning: " << w << "\n";
  if (extras.contains("depth_returns")) o << "# depth_returns: " << extras["depth_returns"].dump() << "\n";
  o << "layer";
  for (auto& c : columns) o << "," << c;
  o << "\n";
  for (size_t l = 0; l < rows.size(); ++l) {
    o << l;
    for (double v : rows[l]) {
      o << ",";
      if (std::isfinite(v)) o << fmt::format("{:.17g}", v);
    }
    o << "\n";
  }
  return o.str();
}

Profile read_profile_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open profile", path.string()));
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    return Profile::from_json(j);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  } catch (const Error& e) {
    throw IoError(fmt::format("{}: {}", path.string(), e.what()));
  }
}

}  // namespace sigprop
