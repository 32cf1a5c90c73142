// A plain Verilator C++ harness for sim.harness.CosimHarness (bench/cosim_speed.py): the same
// Verilog, the same stimulus memories, but the clock is toggled by this loop, with no cocotb.
// Input (text): per run, a line "run batches n_param n_beta n_w n_pass m a_stride n_out seed
// stall backpressure", then for each memory to load "mem <name> <count>" and <count> hex
// words, then "go". Output: per run "clocks <n> seconds <s>" and the captured words in hex.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

static vpiHandle memory(const std::string &name) {
    std::string full = "TOP.asq_cosim." + name;
    vpiHandle h = vpi_handle_by_name(const_cast<char *>(full.c_str()), nullptr);
    if (!h) {
        std::cerr << "no VPI handle for " << full << "\n";
        std::exit(2);
    }
    return h;
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
    for (int i = 0; i < 4; i++) {
        top->clk = !top->clk;
        top->eval();
    }
    top->rst = 0;
    std::string word;
    while (in >> word) {
        if (word != "run") break;
        unsigned long batches, n_param, n_beta, n_w, n_pass, m, a_stride, n_out, seed, stall, bp;
        in >> batches >> n_param >> n_beta >> n_w >> n_pass >> m >> a_stride >> n_out >> seed >>
            stall >> bp;
        while (in >> word && word == "mem") {
            std::string name;
            size_t count;
            in >> name >> count;
            vpiHandle mem = memory(name);
            std::string hex;
            for (size_t i = 0; i < count; i++) {
                in >> hex;
                vpiHandle e = vpi_handle_by_index(mem, (PLI_INT32)i);
                s_vpi_value v;
                v.format = vpiHexStrVal;
                v.value.str = const_cast<char *>(hex.c_str());
                vpi_put_value(e, &v, nullptr, vpiNoDelay);
            }
        }
        top->batches = batches; top->n_param = n_param; top->n_beta = n_beta; top->n_w = n_w;
        top->n_pass = n_pass; top->m = m; top->a_stride = a_stride; top->n_out = n_out;
        top->seed = seed; top->stall = stall; top->backpressure = bp;
        top->go = 1;
        unsigned long clocks = 0;
        auto t0 = std::chrono::steady_clock::now();
        while (!top->done) {
            top->clk = 1;
            top->eval();
            top->clk = 0;
            top->eval();
            if (++clocks > 2000000000UL) return 3;
        }
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out << "clocks " << top->clocks << " seconds " << s << "\n";
        vpiHandle cap = memory("cap_out");
        for (unsigned long i = 0; i < n_out; i++) {
            s_vpi_value v;
            v.format = vpiHexStrVal;
            vpi_get_value(vpi_handle_by_index(cap, (PLI_INT32)i), &v);
            out << v.value.str << "\n";
        }
        top->go = 0;
        for (int i = 0; i < 4; i++) {
            top->clk = !top->clk;
            top->eval();
        }
    }
    top->final();
    return 0;
}
