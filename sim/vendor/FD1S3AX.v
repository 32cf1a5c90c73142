// A simulation model of the ECP5's FD1S3AX flip-flop (D, positive clock, cleared at
// configuration), which hw/local_reset.py instantiates for each copy of the reset on an ECP5.
/* verilator lint_off UNUSEDPARAM */
module FD1S3AX #(parameter GSR = "ENABLED") (input CK, input D, output reg Q);
    initial Q = 1'b0;
    always @(posedge CK) Q <= D;
endmodule
