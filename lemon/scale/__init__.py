"""Millions of pairs: splits searched and scored block by block (stream), and a run scored in parts run
as separate jobs (parts)."""
