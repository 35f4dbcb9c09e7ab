// The zeroclip command-line tool: a registry of subcommands and a small flag parser.
// Each subcommand lives in its own cmd_<name>.cpp and registers itself with ZEROCLIP_CLI_COMMAND,
// so adding one never touches main.cpp.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace zeroclip_cli {

/// A usage mistake: main prints it with the subcommand's help and exits with code 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// Parsed command line of one subcommand: `--flag value`, `--flag=value`, `--switch`, positionals.
class args {
public:
    /// `value_flags` take a value; `switches` do not. Unknown flags are usage errors.
    args(const std::vector<std::string>& argv, const std::vector<std::string>& value_flags,
         const std::vector<std::string>& switches);

    bool has(const std::string& flag) const { return values_.count(flag) || switches_.count(flag); }
    /// The last value given for a flag, or nullopt.
    std::optional<std::string> get(const std::string& flag) const;
    /// Every value given for a repeatable flag, in order.
    std::vector<std::string> get_all(const std::string& flag) const;
    /// The value of a flag that must be present (usage_error otherwise).
    std::string required(const std::string& flag) const;
    int get_int(const std::string& flag, int fallback, int min_value, int max_value) const;
    const std::vector<std::string>& positionals() const { return positionals_; }

private:
    std::map<std::string, std::vector<std::string>> values_;
    std::map<std::string, bool> switches_;
    std::vector<std::string> positionals_;
};

/// One subcommand. `run` gets the arguments after the subcommand name and returns the exit code.
struct command {
    std::string name;
    std::string summary;  // one line for `zeroclip --help`
    std::string help;     // full text for `zeroclip NAME --help` (usage, flags, examples)
    std::function<int(const std::vector<std::string>&)> run;
};

std::map<std::string, command>& registry();

struct registration {
    explicit registration(command c) { registry()[c.name] = std::move(c); }
};

}  // namespace zeroclip_cli

#define ZEROCLIP_CLI_CONCAT_(a, b) a##b
#define ZEROCLIP_CLI_CONCAT(a, b) ZEROCLIP_CLI_CONCAT_(a, b)
/// Registers a subcommand: ZEROCLIP_CLI_COMMAND({"name", "summary", "help", run_function});
#define ZEROCLIP_CLI_COMMAND(...) \
    static const ::zeroclip_cli::registration ZEROCLIP_CLI_CONCAT(zeroclip_cli_reg_, __COUNTER__){__VA_ARGS__}
