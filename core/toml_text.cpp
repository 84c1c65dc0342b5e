#include "core/toml_text.hpp"

#include <cstdio>
#include <fstream>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.hpp"

namespace sigprop {

void check_toml_limits(std::string_view text, const std::string& origin) {
  if (text.size() > kMaxTomlBytes)
    throw ConfigError(fmt::format("{}: {} bytes is longer than the {} bytes sigprop reads from a TOML file", origin,
                                  text.size(), kMaxTomlBytes));
  const size_t n = text.size();
  size_t i = 0;
  int line = 1;
  auto too_deep = [&]() {
    throw ConfigError(fmt::format("{}:{}: TOML nested deeper than {} levels (tables, dotted keys, arrays and inline "
                                  "tables together); sigprop's files need at most 4",
                                  origin, line, kMaxTomlNesting));
  };
  auto starts = [&](std::string_view s) { return text.substr(i, s.size()) == s; };
  // Moves i past the string that starts at i (at a quote); an unterminated one stops at the
  // end of its line (single-line) or of the text (multi-line) and the parser reports it.
  auto skip_string = [&]() {
    if (starts("\"\"\"") || starts("'''")) {
      const char q = text[i];
      i += 3;
      while (i < n) {
        if (q == '"' && text[i] == '\\') {
          if (i + 1 < n && text[i + 1] == '\n') ++line;
          i += 2;
          continue;
        }
        if (text[i] == '\n') ++line;
        if (text[i] == q && i + 2 < n && text[i + 1] == q && text[i + 2] == q) {
          i += 3;
          while (i < n && text[i] == q) ++i;  // up to two quotes may close the content
          return;
        }
        ++i;
      }
      return;
    }
    const char q = text[i++];
    while (i < n && text[i] != '\n') {
      if (q == '"' && text[i] == '\\') {
        i += 2;
        continue;
      }
      if (text[i++] == q) return;
    }
  };
  auto skip_comment = [&]() {
    while (i < n && text[i] != '\n') ++i;
  };

  enum class Ctx { LineStart, Key, Value };
  Ctx ctx = Ctx::LineStart;
  int header_depth = 0;  // components of the current [table] / [[array]] header
  int cur = 0;           // depth of what is being read now
  int key_comps = 0;     // components of the key being read
  std::vector<std::pair<char, int>> open;  // '[' or '{' of values, with the depth outside it
  while (i < n) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      ++i;
      if (ctx == Ctx::Key || (ctx == Ctx::Value && open.empty())) {
        ctx = Ctx::LineStart;
        open.clear();
      }
      continue;
    }
    switch (ctx) {
      case Ctx::LineStart:
        if (c == ' ' || c == '\t' || c == '\r') {
          ++i;
        } else if (c == '#') {
          skip_comment();
        } else if (c == '[') {
          // [a.b.c] or [[a.b.c]] (an array of tables adds one level)
          int comps = 1;
          ++i;
          if (i < n && text[i] == '[') {
            ++comps;
            ++i;
          }
          while (i < n && text[i] != ']' && text[i] != '\n') {
            if (text[i] == '"' || text[i] == '\'') {
              skip_string();
              continue;
            }
            if (text[i] == '.' && ++comps > kMaxTomlNesting) too_deep();
            ++i;
          }
          header_depth = comps;
          skip_comment();  // the rest of the line: "]", "]]" and a comment at most
        } else {
          ctx = Ctx::Key;
          cur = header_depth;
          key_comps = 1;
        }
        break;
      case Ctx::Key:
        if (c == '"' || c == '\'') {
          skip_string();
        } else if (c == '.') {
          ++key_comps;
          ++i;
        } else if (c == '=') {
          cur += key_comps;
          if (cur > kMaxTomlNesting) too_deep();
          ctx = Ctx::Value;
          ++i;
        } else if (c == '}' && !open.empty()) {  // empty inline table "{}"
          cur = open.back().second;
          open.pop_back();
          ctx = Ctx::Value;
          ++i;
        } else {
          ++i;
        }
        break;
      case Ctx::Value:
        if (c == '"' || c == '\'') {
          skip_string();
        } else if (c == '#') {
          skip_comment();
        } else if (c == '[' || c == '{') {
          open.emplace_back(c, cur);
          if (++cur > kMaxTomlNesting) too_deep();
          if (c == '{') {
            ctx = Ctx::Key;
            key_comps = 1;
          }
          ++i;
        } else if ((c == ']' || c == '}') && !open.empty()) {
          cur = open.back().second;
          open.pop_back();
          ++i;
        } else if (c == ',' && !open.empty()) {
          cur = open.back().second + 1;
          if (open.back().first == '{') {
            ctx = Ctx::Key;
            key_comps = 1;
          }
          ++i;
        } else {
          ++i;
        }
        break;
    }
  }
}

std::string read_toml_file(const std::filesystem::path& path, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw IoError(fmt::format("{}: cannot read {}: it is a directory", path.string(), what));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open {}", path.string(), what));
  std::string text;
  char buf[65536];
  while (in) {
    in.read(buf, sizeof buf);
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxTomlBytes)
      throw ConfigError(fmt::format("{}: {} is longer than the {} bytes sigprop reads from a TOML file",
                                    path.string(), what, kMaxTomlBytes));
  }
  if (in.bad()) throw IoError(fmt::format("{}: cannot read {}", path.string(), what));
  return text;
}

}  // namespace sigprop
