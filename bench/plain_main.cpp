// A plain Verilator C++ harness for sim.harness.CosimHarness (bench/cosim_speed.py): the same
// Verilog, the same stimulus memories, but the clock is toggled by this loop, with no cocotb.
//
// Input (text), per run: a line "run name=value ..." naming every field of RUN_FIELDS (the
// harness's ports that shape a run, generated from sim.harness.COUNTS into run_fields.h by
// bench/cosim_speed.py) and "budget=<clocks>"; then for each memory to load "mem <name>
// <count>" and <count> hex words; then "go". A field missing or unknown, or a run that takes
// more clocks than its budget, stops the harness with a message on stderr and status 3.
// Output: per run "clocks <n> seconds <s>" and the captured words in hex.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vtop.h"
#include "run_fields.h"
#include "verilated.h"
#include "verilated_vpi.h"

struct Field {
    const char *name;
    void (*set)(Vtop &, unsigned long);
};

#define ASQ_FIELD(f) {#f, [](Vtop &t, unsigned long v) { t.f = v; }},
static const Field FIELDS[] = {RUN_FIELDS(ASQ_FIELD)};
static const char *STREAMS[] = {RUN_STREAMS};

[[noreturn]] static void fail(const std::string &message) {
    std::cerr << "plain: " << message << "\n";
    std::exit(3);
}

static vpiHandle handle(const std::string &name) {
    std::string full = "TOP.asq_cosim." + name;
    vpiHandle h = vpi_handle_by_name(const_cast<char *>(full.c_str()), nullptr);
    if (!h) fail("no VPI handle for " + full);
    return h;
}

static unsigned long get(const std::string &name) {
    s_vpi_value v;
    v.format = vpiIntVal;
    vpi_get_value(handle(name), &v);
    return (unsigned long)(unsigned)v.value.integer;
}

// The fields of a "run" line (after "run"): every one of FIELDS exactly once, and the budget.
static unsigned long set_fields(Vtop &top, const std::string &line, int run) {
    std::map<std::string, unsigned long> given;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
        size_t eq = word.find('=');
        if (eq == std::string::npos) fail("run " + std::to_string(run) + ": '" + word +
                                          "' is not name=value");
        given[word.substr(0, eq)] = std::stoul(word.substr(eq + 1));
    }
    if (!given.count("budget")) fail("run " + std::to_string(run) + ": no budget=");
    unsigned long budget = given["budget"];
    given.erase("budget");
    for (const Field &f : FIELDS) {
        auto it = given.find(f.name);
        if (it == given.end()) fail("run " + std::to_string(run) + ": field " + f.name +
                                    " missing (run_fields.h: " + RUN_FIELDS_SOURCE + ")");
        f.set(top, it->second);
        given.erase(it);
    }
    if (!given.empty()) fail("run " + std::to_string(run) + ": unknown field " +
                             given.begin()->first + " (run_fields.h: " + RUN_FIELDS_SOURCE +
                             ")");
    return budget;
}

static void tick(Vtop &top, int half_periods) {
    for (int i = 0; i < half_periods; i++) {
        top.clk = !top.clk;
        top.eval();
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        std::cerr << "usage: plain STIMULUS OUTPUT\n";
        return 2;
    }
    Verilated::commandArgs(argc, argv);
    auto top = std::make_unique<Vtop>();
    std::ifstream in(argv[1]);
    std::ofstream out(argv[2]);
    top->clk = 0;
    top->rst = 1;
    top->go = 0;
    tick(*top, 4);
    top->rst = 0;
    std::string word;
    for (int run = 0; in >> word; run++) {
        if (word != "run") fail("expected 'run', not '" + word + "'");
        std::string line;
        std::getline(in, line);
        unsigned long budget = set_fields(*top, line, run);
        while (in >> word && word == "mem") {
            std::string name, hex;
            size_t count;
            in >> name >> count;
            vpiHandle mem = handle(name);
            for (size_t i = 0; i < count; i++) {
                in >> hex;
                s_vpi_value v;
                v.format = vpiHexStrVal;
                v.value.str = const_cast<char *>(hex.c_str());
                vpi_put_value(vpi_handle_by_index(mem, (PLI_INT32)i), &v, nullptr, vpiNoDelay);
            }
        }
        if (word != "go") fail("run " + std::to_string(run) + ": expected 'go', not '" + word +
                               "'");
        top->go = 1;
        unsigned long clocks = 0;
        auto t0 = std::chrono::steady_clock::now();
        while (!top->done) {
            top->clk = 1;
            top->eval();
            top->clk = 0;
            top->eval();
            if (++clocks > budget) {
                std::ostringstream msg;
                msg << "run " << run << " is not done after its budget of " << budget
                    << " clocks; words moved:";
                for (const char *s : STREAMS)
                    msg << " " << s << " " << get(std::string("taken_") + s);
                fail(msg.str());
            }
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out << "clocks " << top->clocks << " seconds " << s << "\n";
        vpiHandle cap = handle("cap_out");
        unsigned long n_out = get("n_out");
        for (unsigned long i = 0; i < n_out; i++) {
            s_vpi_value v;
            v.format = vpiHexStrVal;
            vpi_get_value(vpi_handle_by_index(cap, (PLI_INT32)i), &v);
            out << v.value.str << "\n";
        }
        top->go = 0;
        tick(*top, 4);
    }
    top->final();
    return 0;
}
