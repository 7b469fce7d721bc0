"""Benchmarks users run: ``iovctl bench datapath`` (``datapath``), its traffic probes
(``probe``) and its table (``report``).

Unlike tests, benchmarks report numbers and never judge them. They build what they
measure in throwaway state and remove it afterwards. Needs root.
"""
