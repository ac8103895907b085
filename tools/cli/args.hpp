// A small option parser for the letsencrypt tool: "--name value" and "--flag".
#pragma once

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace letsencrypt::cli {

class args {
 public:
  /// Parses argv[1..] against the known options (those taking a value and plain flags).
  /// On an unknown option or a missing value prints the error and sets ok() false.
  args(int argc, char** argv, std::set<std::string> with_value, std::set<std::string> flags) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        help_ = true;
      } else if (with_value.count(a)) {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "%s needs a value\n", a.c_str());
          ok_ = false;
          return;
        }
        values_[a] = argv[++i];
      } else if (flags.count(a)) {
        flags_.insert(a);
      } else if (!a.empty() && a[0] != '-') {
        positional_.push_back(a);
      } else {
        std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
        ok_ = false;
        return;
      }
    }
  }
  bool ok() const { return ok_; }
  bool help() const { return help_; }
  bool has(const std::string& k) const { return values_.count(k) || flags_.count(k); }
  std::string get(const std::string& k, std::string fallback = {}) const {
    auto it = values_.find(k);
    return it == values_.end() ? fallback : it->second;
  }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  bool ok_ = true;
  bool help_ = false;
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

}  // namespace letsencrypt::cli
