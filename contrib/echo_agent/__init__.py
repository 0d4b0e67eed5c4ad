"""An example agent: answers every text message with "echo: <text>"."""
