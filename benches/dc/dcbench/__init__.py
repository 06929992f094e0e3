"""blobpin data-centre benchmark harness (see benches/dc/README.md)."""
