// A simulation model of the ECP5's MULT18X18D DSP block: the part of it that hw/dsp.py uses.
//
// Yosys ships only a black box of this primitive (share/lattice/cells_bb_ecp5.v), so the
// project's Verilator runs of a design built for an ECP5 (tests/test_dsp.py) use this model:
// an 18 x 18 multiplier, signed or unsigned per operand (SIGNEDA, SIGNEDB), whose A and B
// inputs (with their sign controls), pipeline stage and P output are each registered on CLK0
// when their REG_*_CLK parameter is "CLK0" and combinational when it is "NONE", with clock
// enable CE0 and synchronous reset RST0 (RESETMODE "SYNC"), as Lattice's sysDSP usage guide
// (FPGA-TN-02205) describes. The other clocks, enables and resets, the C input, the shift
// and cascade ports (SOURCEA/B, SRI*, SRO*, RO*) and SIGNEDP are not modelled: a parameter
// that selects one of them stops the simulation.
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
module MULT18X18D #(
    parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
    parameter REG_INPUTA_RST = "RST0",
    parameter REG_INPUTB_CLK = "NONE", parameter REG_INPUTB_CE = "CE0",
    parameter REG_INPUTB_RST = "RST0",
    parameter REG_INPUTC_CLK = "NONE", parameter REG_INPUTC_CE = "CE0",
    parameter REG_INPUTC_RST = "RST0",
    parameter REG_PIPELINE_CLK = "NONE", parameter REG_PIPELINE_CE = "CE0",
    parameter REG_PIPELINE_RST = "RST0",
    parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
    parameter REG_OUTPUT_RST = "RST0",
    parameter CLK0_DIV = "ENABLED", parameter CLK1_DIV = "ENABLED",
    parameter CLK2_DIV = "ENABLED", parameter CLK3_DIV = "ENABLED",
    parameter HIGHSPEED_CLK = "NONE", parameter GSR = "ENABLED",
    parameter CAS_MATCH_REG = "FALSE", parameter SOURCEB_MODE = "B_SHIFT",
    parameter MULT_BYPASS = "DISABLED", parameter RESETMODE = "SYNC"
) (
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6,
    A5, A4, A3, A2, A1, A0, B17, B16, B15, B14, B13, B12,
    B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6,
    C5, C4, C3, C2, C1, C0,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
    P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12,
    P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
    initial begin
        if (REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") $fatal(1, "REG_INPUTA_CLK");
        if (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0") $fatal(1, "REG_INPUTB_CLK");
        if (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0")
            $fatal(1, "REG_PIPELINE_CLK");
        if (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0") $fatal(1, "REG_OUTPUT_CLK");
        if (REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_PIPELINE_CE != "CE0"
            || REG_OUTPUT_CE != "CE0") $fatal(1, "a clock enable other than CE0");
        if (REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0"
            || REG_OUTPUT_RST != "RST0") $fatal(1, "a reset other than RST0");
        if (RESETMODE != "SYNC") $fatal(1, "RESETMODE");
        if (MULT_BYPASS != "DISABLED") $fatal(1, "MULT_BYPASS");
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q = 18'd0, b_q = 18'd0;
    reg sa_q = 1'b0, sb_q = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_q <= 18'd0; b_q <= 18'd0; sa_q <= 1'b0; sb_q <= 1'b0;
        end else if (CE0) begin
            a_q <= a; b_q <= b; sa_q <= SIGNEDA; sb_q <= SIGNEDB;
        end
    end
    wire [17:0] a_in = REG_INPUTA_CLK == "NONE" ? a : a_q;
    wire [17:0] b_in = REG_INPUTB_CLK == "NONE" ? b : b_q;
    wire sa_in = REG_INPUTA_CLK == "NONE" ? SIGNEDA : sa_q;
    wire sb_in = REG_INPUTB_CLK == "NONE" ? SIGNEDB : sb_q;
    // 36 bits hold the exact product of two 18-bit operands, signed or unsigned.
    wire [35:0] product = {{18{sa_in & a_in[17]}}, a_in} * {{18{sb_in & b_in[17]}}, b_in};

    reg [35:0] pipe_q = 36'd0, out_q = 36'd0;
    wire [35:0] piped = REG_PIPELINE_CLK == "NONE" ? product : pipe_q;
    always @(posedge CLK0) begin
        if (RST0) begin
            pipe_q <= 36'd0; out_q <= 36'd0;
        end else if (CE0) begin
            pipe_q <= product; out_q <= piped;
        end
    end
    wire [35:0] p = REG_OUTPUT_CLK == "NONE" ? piped : out_q;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule
