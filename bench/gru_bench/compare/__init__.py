"""Baseline vs candidate: match cases by configuration, test each metric, give verdicts and an exit code.

Per case and metric the verdict is one of ``improved / unchanged / regressed / inconclusive / new / missing /
failed`` (``inconclusive``: the test could neither show nor refute non-inferiority; it gates only on request):

* timing (``train_time``, ``forward_time``): a one-sided Mann-Whitney U test on the raw samples *and* the ratio of
  medians candidate/baseline against a minimum factor (default 1.10); a seeded bootstrap CI of the ratio; the
  p-values of all timing comparisons are corrected together (Benjamini-Hochberg). When the two sides come from
  different machines, each record's samples are scaled by its ``calibration.gemm_gflops`` first, with a warning.
* accuracy / loss, per configuration across seeds (cases that differ only by ``seed``): a non-inferiority test with
  a margin (a one-sided t test: the lower side of TOST), paired by seed when both sides ran the same seeds (same
  weights, same batches), Welch's otherwise; with one value per side, or no spread in the differences
  (deterministic runs), an exact/threshold comparison instead, and the row says so.
* ``params``/``flops``: exact; ``memory``: a change must exceed both a relative and an absolute tolerance.

A case that appears more than once on a side (several runs of one suite in a folder, interleaved CI rounds) is
pooled: its timing samples together, its accuracy/loss as the mean per seed, so the seeds still pair the sides; a
record that holds one case twice is warned about. Non-finite timing samples (NaN, inf) are dropped with a warning
naming the record and the case; a case with no finite sample has no timing verdict.

The thresholds are check objects that decide their own verdicts (``checks.py``; ``thresholds.py`` parses
``--fail-on``). Only gating metrics turn a regression into exit code 1; a candidate case that fails (crash,
divergence, timeout, OOM) where the baseline did not always does. ``compare`` reads run records only
(``schema``, ``storage``); it imports no framework.

Modules, each depending only on those above it: ``stats`` (the tests), ``checks`` (thresholds and their verdicts),
``thresholds`` (the ``--fail-on`` grammar), ``rows`` (``Row``, ``Comparison``), ``loading`` and ``machines`` (the
sides), ``quality`` and ``engine`` (``compare_records``), ``output`` (table, Markdown), ``command`` (the CLI glue).
"""
