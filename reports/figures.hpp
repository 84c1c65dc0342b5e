#pragma once
/// @file Figures drawn by gnuplot from a script and its data, as every sigprop report does
/// (`sigprop report`, the depth study): each figure keeps its .gp script and .dat data next
/// to the SVG and PNG, so a reader can redraw or restyle it; drawing never fails the run,
/// it reports which figures could not be drawn and why. Plus the text helpers reports share.
#include <filesystem>
#include <string>
#include <vector>

namespace sigprop::reports {

/// One figure: `script` reads "<stem>.dat" from its own folder.
struct Figure {
  std::string stem, title, reading;
  int width = 1200, height = 420;
  std::string script, data;
};

struct DrawResult {
  std::vector<std::string> drawn;    ///< stems with .svg and .png written
  std::vector<std::string> missing;  ///< stems whose drawing failed or was impossible
  std::string problem;               ///< why figures are missing ("" when none)
  std::string gnuplot_version;       ///< `gnuplot --version`, "" when it could not be run
};

/// Writes <stem>.dat and <stem>.gp of every figure into figdir (created if needed), then
/// draws <stem>.svg and <stem>.png with `gnuplot` (a program name or path; empty = do not
/// draw). Every file is written atomically; a stale picture of a figure that could not be
/// drawn is removed. @throws IoError when figdir cannot be created or written.
DrawResult draw_figures(const std::filesystem::path& figdir, const std::vector<Figure>& figures,
                        const std::string& gnuplot);

namespace figures_detail {
/// s with & < > " escaped for HTML.
std::string html(const std::string& s);
/// s inside a gnuplot double-quoted string.
std::string gp(const std::string& s);
/// s as one single-quoted shell word.
std::string shell_quote(const std::string& s);
/// RFC 4648 base64 of bytes.
std::string base64(const std::string& in);
/// The whole file, "" when it cannot be read.
std::string slurp(const std::filesystem::path& p);
/// x in a .dat file: 10 significant digits, "NaN" when not finite (a missing value in a
/// whitespace-separated column must still be a token; gnuplot skips it).
std::string dat_num(double x);
}  // namespace figures_detail

}  // namespace sigprop::reports
