"""The pipeline that wires pure logic to the adapters: stage 1 (route), stage 2 (deliver)."""
