// Entry point of the `zeroclip` tool: dispatches to the registered subcommands.
// Exit codes: 0 success, 1 a runtime failure (bad file, failed image), 2 a usage error.
#include <cstdlib>
#include <iostream>

#include "cli.hpp"
#include "text.hpp"
#include <zeroclip/error.hpp>

namespace zeroclip_cli {

std::map<std::string, command>& registry() {
    static std::map<std::string, command> commands;
    return commands;
}

args::args(const std::vector<std::string>& argv, const std::vector<std::string>& value_flags,
           const std::vector<std::string>& switch_flags) {
    auto is_in = [](const std::vector<std::string>& list, const std::string& s) {
        for (const auto& x : list)
            if (x == s) return true;
        return false;
    };
    for (size_t i = 0; i < argv.size(); ++i) {
        const std::string& a = argv[i];
        if (a == "--") {
            for (++i; i < argv.size(); ++i) positionals_.push_back(argv[i]);
            break;
        }
        if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
            std::string flag = a, value;
            bool inline_value = false;
            if (auto eq = a.find('='); eq != std::string::npos) {
                flag = a.substr(0, eq);
                value = a.substr(eq + 1);
                inline_value = true;
            }
            if (is_in(switch_flags, flag)) {
                if (inline_value) throw usage_error("flag " + flag + " takes no value");
                switches_[flag] = true;
            } else if (is_in(value_flags, flag)) {
                if (!inline_value) {
                    if (i + 1 >= argv.size()) throw usage_error("flag " + flag + " needs a value");
                    value = argv[++i];
                }
                values_[flag].push_back(value);
            } else {
                throw usage_error("unknown flag " + flag);
            }
        } else {
            positionals_.push_back(a);
        }
    }
}

std::optional<std::string> args::get(const std::string& flag) const {
    auto it = values_.find(flag);
    if (it == values_.end() || it->second.empty()) return std::nullopt;
    return it->second.back();
}

std::vector<std::string> args::get_all(const std::string& flag) const {
    auto it = values_.find(flag);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string args::required(const std::string& flag) const {
    auto v = get(flag);
    if (!v) throw usage_error("missing required flag " + flag);
    return *v;
}

int args::get_int(const std::string& flag, int fallback, int min_value, int max_value) const {
    auto v = get(flag);
    if (!v) return fallback;
    char* end = nullptr;
    long n = std::strtol(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || n < min_value || n > max_value)
        throw usage_error(flag + " must be an integer from " + std::to_string(min_value) + " to " +
                          std::to_string(max_value) + ", got '" + *v + "'");
    return static_cast<int>(n);
}

}  // namespace zeroclip_cli

namespace {

void print_overview(std::ostream& out) {
    out << "zeroclip — zero-shot image classification with CLIP\n\n"
           "usage: zeroclip COMMAND [FLAGS...]\n\ncommands:\n";
    for (const auto& [name, cmd] : zeroclip_cli::registry())
        out << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ')
            << cmd.summary << "\n";
    out << "\n'zeroclip COMMAND --help' shows a command's flags and examples.\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> rest(argv + (argc > 1 ? 2 : 1), argv + argc);
    if (argc < 2) {
        print_overview(std::cerr);
        return 2;
    }
    std::string name = argv[1];
    if (name == "--help" || name == "-h" || name == "help") {
        print_overview(std::cout);
        return 0;
    }
    auto& commands = zeroclip_cli::registry();
    auto it = commands.find(name);
    if (it == commands.end()) {
        std::cerr << "zeroclip: unknown command '" << name << "'\n\n";
        print_overview(std::cerr);
        return 2;
    }
    for (const auto& a : rest)
        if (a == "--help" || a == "-h") {
            std::cout << it->second.help;
            return 0;
        }
    try {
        return it->second.run(rest);
    } catch (const zeroclip_cli::usage_error& e) {  // messages may quote file names: escaped to one line
        std::cerr << "zeroclip " << name << ": " << zeroclip_cli::escape_text(e.what()) << "\n\n" << it->second.help;
        return 2;
    } catch (const zeroclip::error& e) {
        std::cerr << "zeroclip " << name << ": " << zeroclip_cli::escape_text(e.what()) << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "zeroclip " << name << ": unexpected error: " << e.what() << "\n";
        return 1;
    }
}
