"""The scenario catalogue: every suggestion, applied as shown, must keep the code working."""
