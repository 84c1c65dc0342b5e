// gnuplot figures and text helpers shared by reports (see figures.hpp).
#include "reports/figures.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/profile.hpp"

namespace sigprop::reports {
namespace fs = std::filesystem;

namespace figures_detail {
std::string html(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}
/// A string inside a gnuplot double-quoted string.
std::string gp(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}
std::string shell_quote(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return o + "'";
}
std::string base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::string dat_num(double x) { return std::isfinite(x) ? fmt::format("{:.10g}", x) : "NaN"; }
}  // namespace figures_detail

DrawResult draw_figures(const fs::path& figdir, const std::vector<Figure>& figures, const std::string& gnuplot_in) {
  using namespace figures_detail;
  DrawResult res;
  std::error_code ec;
  // gnuplot runs inside figdir: a relative path to it (./gp, bin/gnuplot) is made absolute
  // first; a bare name is looked up on PATH as given.
  const std::string gnuplot = gnuplot_in.find('/') != std::string::npos ? fs::absolute(gnuplot_in).string() : gnuplot_in;
  fs::create_directories(figdir, ec);
  if (ec) throw IoError(fmt::format("{}: cannot create folder: {}", figdir.string(), ec.message()));
  std::string gnuplot_version;
  if (gnuplot.empty()) {
    res.problem = "drawing was switched off (no gnuplot program given)";
  } else {
    std::string cmd = shell_quote(gnuplot) + " --version 2>/dev/null";
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[256];
      while (std::fgets(buf, sizeof buf, p)) gnuplot_version += buf;
      int rc = ::pclose(p);
      if (rc != 0 || gnuplot_version.find("gnuplot") == std::string::npos) gnuplot_version.clear();
    }
    while (!gnuplot_version.empty() && gnuplot_version.back() == '\n') gnuplot_version.pop_back();
    if (gnuplot_version.empty())
      res.problem = fmt::format("gnuplot could not be run (tried \"{}\"); install Debian's gnuplot-nox",
                                        gnuplot);
  }
  for (auto& f : figures) {
    write_file_atomic(figdir / (f.stem + ".dat"), f.data);
    write_file_atomic(figdir / (f.stem + ".gp"),
                      fmt::format("# {}: run `gnuplot -e \"set terminal svg size {},{}; set output '{}.svg'\" {}.gp` in "
                                  "this folder to redraw.\n{}",
                                  f.title, f.width, f.height, f.stem, f.stem, f.script));
    bool ok = !gnuplot_version.empty();
    for (const char* ext : {"svg", "png"}) {
      if (!ok) break;
      std::string tmp = ".tmp." + f.stem + "." + ext;
      std::string term =
          std::string(ext) == "svg"
              ? fmt::format("set terminal svg size {},{} noenhanced font 'Sans,12' background rgb 'white'", f.width,
                            f.height)
              : fmt::format("set terminal pngcairo size {},{} noenhanced font 'Sans,11' background rgb 'white'",
                            f.width, f.height);
      std::string cmd = fmt::format("cd {} && {} -e {} {} > {} 2>&1", shell_quote(figdir.string()),
                                    shell_quote(gnuplot), shell_quote(term + "; set output '" + tmp + "'"),
                                    shell_quote(f.stem + ".gp"), shell_quote(".tmp." + f.stem + ".log"));
      int rc = std::system(cmd.c_str());
      std::string log = slurp(figdir / (".tmp." + f.stem + ".log"));
      fs::remove(figdir / (".tmp." + f.stem + ".log"), ec);
      if (rc != 0 || !fs::exists(figdir / tmp) || fs::file_size(figdir / tmp, ec) == 0) {
        ok = false;
        fs::remove(figdir / tmp, ec);
        if (res.problem.empty())
          res.problem = fmt::format("gnuplot failed on figures/{}.gp: {}", f.stem, log.substr(0, 400));
        break;
      }
      fs::rename(figdir / tmp, figdir / (f.stem + "." + ext), ec);
      if (ec) {
        const std::string why = ec.message();  // before remove() reuses ec
        fs::remove(figdir / tmp, ec);
        throw IoError(fmt::format("{}: cannot move into place: {}", (figdir / (f.stem + "." + ext)).string(), why));
      }
    }
    if (ok) {
      res.drawn.push_back(f.stem);
    } else {
      res.missing.push_back(f.stem);
      // A stale picture from an earlier run must not pass for this one.
      fs::remove(figdir / (f.stem + ".svg"), ec);
      fs::remove(figdir / (f.stem + ".png"), ec);
    }
  }
  res.gnuplot_version = gnuplot_version;
  return res;
}

}  // namespace sigprop::reports
