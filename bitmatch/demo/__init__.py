"""`bitmatch demo`: the whole harness on this machine in one command.

Starts the coordinator and one worker per local target that can run here (provisioning what it can, saying
why the others are missing), uploads the int16 and float packages (the trained ones in packages/ when they
exist, else seeded random ones, cached) and the demo images, and runs the jobs (every encoder x every
decoder). By default that is two jobs: the Kodak-size photographs (data/kodak) on the native targets, where
the float twin's cross-device decodes break and int16's do not, and the small demo images (data/testset's
96x64 subset, else the synthetic 'tiny' set) on every target, emulated ones included (they are 100-250x
slower). It prints the verdict matrix per codec and one line on
what broke, writes a static HTML report per job and leaves the dashboard running until Ctrl-C. With `--once`
it exits when the jobs are done; `--json` prints one JSON object on stdout and everything else on stderr:
`{"job", "report", "summary", "codecs": {NAME: {VERDICT: COUNT}}, "jobs": [...]}`, the first three of the
first job, `codecs` summed over the jobs, and per job its `id`, `label`, `targets`, `report`, `summary` and
`codecs`.

Every process it starts runs in its own process group and is stopped on exit, including on errors
(bitmatch/fleet.py). The command is command.py, the run run.py, what it reports report.py, and the terminal
matrix table.py.
"""
