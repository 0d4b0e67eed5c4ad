"""Optional add-ons that run beside convosd and talk to it through its socket only."""
