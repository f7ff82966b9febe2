"""The Hugging Face hub stand-in's code, one module per concern; `server.py` beside this folder runs it, and
README.md there says what it reproduces and lists the modules."""
