"""campaign: the plan, what is done and left (read from results/), the commands that start and resume runs."""

import json

import pytest

from fer_keras import campaign, cli, config, provenance, recipes

PLAN = (campaign.PlannedRun("speedrun/b15", "17_speed", 15, "budget", 0, issue=16),
        campaign.PlannedRun("campaign/01_baseline", "01_baseline", 20),
        campaign.PlannedRun("campaign/02_residual", "02_residual", 20))


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv(config.RUNS_ENV, str(tmp_path / "cache"))
    results, runs = tmp_path / "results", tmp_path / "runs"
    (results / "speedrun").mkdir(parents=True)
    (results / "speedrun" / "b15.json").write_text(json.dumps({"test": {"accuracy": 0.62}, "epochs_run": 13}))
    return results, runs


def _state(folder, epochs=3, seconds=600.0, finished=False, args=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"args": args or {"seed": 0}}))
    (folder / "state.json").write_text(json.dumps({"epochs_done": epochs, "train_seconds": seconds,
                                                   "finished": finished}))
    (folder / "state.weights.h5").write_bytes(b"w" * 1000)
    return folder


def test_status_reads_done_partial_and_to_do_from_results_and_states(dirs):
    results, runs = dirs
    _state(results / campaign.STATE_DIR / "campaign" / "01_baseline")  # committed by an earlier session
    rows = {r["name"]: r for r in campaign.status(PLAN, results, runs)}
    assert rows["speedrun/b15"]["status"] == "done" and rows["speedrun/b15"]["accuracy"] == 0.62
    assert rows["campaign/01_baseline"]["status"] == "partial" and rows["campaign/01_baseline"]["epochs"] == 3
    assert rows["campaign/01_baseline"]["trained_min"] == 10.0 and rows["campaign/02_residual"]["status"] == "to do"
    text = campaign.format_status(list(rows.values()))
    assert "1/3 done" in text and "about 0.5 h of training left" in text  # 10 + 20 minutes left


def test_a_finished_state_is_not_partial_and_the_cache_comes_before_the_committed_copy(dirs):
    results, runs = dirs
    run = PLAN[1]
    _state(results / campaign.STATE_DIR / run.name, epochs=1)
    cache = _state(config.run_state_dir(run.out_dir(runs)), epochs=5)
    assert campaign.find_state(run, results, runs) == cache
    (cache / "state.json").write_text(json.dumps({"finished": True}))
    assert campaign.find_state(run, results, runs) == results / campaign.STATE_DIR / run.name


def test_commands_start_resume_and_cut_runs_as_the_cli_reads_them(dirs):
    results, runs = dirs
    parser = cli.build_parser()
    start = campaign.command(PLAN[0], results, runs)  # a budget run, not cut: no time limit
    args = parser.parse_args(start[3:])
    assert (args.step, args.budget, args.seed, args.time_limit, args.restart) == ("17_speed", 15, 0, None, True)
    cut = parser.parse_args(campaign.command(PLAN[0], results, runs, cut_minutes=7)[3:])
    assert cut.time_limit == 7 and cut.budget == 15  # cut by the session's end, budget unchanged
    timed = parser.parse_args(campaign.command(PLAN[1], results, runs)[3:])
    assert timed.budget is None and timed.time_limit == 20  # the step's own schedule, 20 minutes of training
    state = _state(results / campaign.STATE_DIR / PLAN[1].name, seconds=15 * 60)
    resumed = parser.parse_args(campaign.command(PLAN[1], results, runs, cut_minutes=60, state=state)[3:])
    assert resumed.resume == str(state) and resumed.time_limit == 5  # only the 5 minutes it has left
    assert resumed.results_json.endswith("campaign/01_baseline.json")


def test_run_next_skips_done_runs_resumes_partial_ones_and_stops_when_time_is_out(dirs, capsys):
    results, runs = dirs
    _state(results / campaign.STATE_DIR / PLAN[1].name, seconds=15 * 60)
    ran = campaign.run_next(30, PLAN, results, runs, dry_run=True)
    assert [r["name"] for r in ran] == ["campaign/01_baseline", "campaign/02_residual"]
    assert "--resume" in ran[0]["command"] and "--restart" in ran[1]["command"]
    assert campaign.run_next(4, PLAN, results, runs, dry_run=True) == []  # under 2 minutes after the reserve
    assert [r["name"] for r in campaign.run_next(30, PLAN, results, runs, dry_run=True,
                                                 only=["campaign/02_residual"])] == ["campaign/02_residual"]


def test_a_done_paper_run_without_int8_numbers_gets_its_int8_export(dirs):
    results, runs = dirs
    paper = campaign.PlannedRun("speedrun/b15", "17_speed", 15, "budget", int8=True)
    ran = campaign.run_next(30, (paper,), results, runs, dry_run=True)
    assert len(ran) == 1 and ran[0]["command"][3] == "export"
    args = cli.build_parser().parse_args(ran[0]["command"][3:])
    assert (args.mode, args.allow_float, args.data) == ("int8", True, "fer2013")
    assert args.model == str(runs / "speedrun" / "b15" / "model.keras")
    assert args.results_json == str(results / "speedrun" / "b15.json")
    (results / "speedrun" / "b15.json").write_text(json.dumps({"test": {"accuracy": 0.62}, "int8": {}}))
    assert campaign.run_next(30, (paper,), results, runs, dry_run=True) == []  # recorded: nothing to do
    assert campaign.run_next(30, PLAN[:1], results, runs, dry_run=True) == []  # not asked for


def test_a_done_run_keeps_its_model_and_a_run_waits_for_its_teachers(dirs, tmp_path, monkeypatch, capsys):
    results, runs = dirs
    monkeypatch.chdir(tmp_path)
    kept = campaign.PlannedRun("speedrun/b15", "17_speed", 15, "budget", keep_model=True)
    (runs / "speedrun" / "b15").mkdir(parents=True)
    (runs / "speedrun" / "b15" / "model.keras").write_bytes(b"model")
    student = campaign.PlannedRun("distill/s", "17_speed", 60, "budget", flags=("--teacher", "results/t.keras"))
    later = campaign.PlannedRun("campaign/02_residual", "02_residual", 20)
    ran = campaign.run_next(90, (kept, student, later), results, runs, dry_run=True)
    assert [r["name"] for r in ran] == ["campaign/02_residual"]  # the student waits; the run after it goes on
    out = capsys.readouterr().out
    assert "distill/s: waits for results/t.keras" in out and not (results / "speedrun" / "b15.keras").exists()
    assert "to do    waits for results/t.keras" in campaign.format_status(campaign.status((student,), results, runs))
    campaign.run_next(90, (kept,), results, runs)  # done: nothing to train, the model is copied
    assert (results / "speedrun" / "b15.keras").read_bytes() == b"model"
    (results / "t.keras").write_bytes(b"teacher")  # results is tmp_path/results: the flag's relative path
    assert [r["name"] for r in campaign.run_next(90, (student,), results, runs, dry_run=True)] == ["distill/s"]


def test_a_student_runs_in_the_same_call_that_trains_its_teacher(dirs, tmp_path, monkeypatch):
    """Twenty-first session: the four out-of-fold teachers finished in one `campaign run`, and their student was
    skipped as 'waits for' its teachers: the runs' status had been read once, before the teachers existed."""
    import subprocess
    from pathlib import Path

    results, runs = dirs
    monkeypatch.chdir(tmp_path)
    teacher = campaign.PlannedRun("distill/t", "17_speed", 15, "budget", keep_model=True)
    student = campaign.PlannedRun("distill/s", "17_speed", 15, "budget", flags=("--teacher", "results/distill/t.keras"))
    trained = []

    def train(cmd):  # what a finished `train` leaves: its model and its results file
        args = cli.build_parser().parse_args(cmd[3:])
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "model.keras").write_bytes(b"model")
        Path(args.results_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results_json).write_text(json.dumps({"test": {"accuracy": 0.6}, "epochs_run": 5}))
        trained.append(args.out)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(campaign.subprocess, "run", train)
    ran = campaign.run_next(90, (teacher, student), results, runs)
    assert [r["name"] for r in ran] == ["distill/t", "distill/s"] and len(trained) == 2
    assert (results / "distill" / "t.keras").read_bytes() == b"model"  # kept before the student's turn


def test_save_copies_partial_states_into_results_and_refuses_large_ones(dirs, monkeypatch):
    results, runs = dirs
    _state(config.run_state_dir(PLAN[1].out_dir(runs)))
    _state(config.run_state_dir(PLAN[2].out_dir(runs)), finished=True)  # finished: nothing to save
    _state(config.run_state_dir(PLAN[0].out_dir(runs)),  # cut by a session's end: results, but not done
           args={"seed": 0, "budget_minutes": 15})
    (results / "speedrun" / "b15.json").write_text(json.dumps({"test": {"accuracy": 0.5}, "epochs_run": 3,
                                                               "stopped_by_time_limit": True}))
    lines = campaign.save_states(PLAN, results, runs)
    assert len(lines) == 2 and "b15: state copied" in lines[0] and "01_baseline: state copied" in lines[1]
    assert json.loads((results / "state" / "campaign" / "01_baseline" / "state.json").read_text())["epochs_done"] == 3
    assert campaign.status(PLAN, results, runs)[0]["status"] == "partial"
    monkeypatch.setattr(campaign, "COMMIT_LIMIT_MB", 0)
    assert "not copied" in campaign.save_states(PLAN, results, runs)[0]


def test_the_plan_is_valid_train_commands_in_order():
    parser = cli.build_parser()
    names = [r.name for r in campaign.PLAN]
    assert len(names) == len(set(names)) and names[:2] == ["speedrun/budget15_seed0", "speedrun/budget15_seed1"]
    for run in campaign.PLAN:
        args = parser.parse_args(campaign.command(run, "results")[3:])
        assert args.step == run.step and (args.budget is not None) == (run.kind == "budget")
    s004 = [r for r in campaign.PLAN if r.step == "03_cbam"]  # the paper's width, then the CPU-sized track
    widths = [dict(parser.parse_args(campaign.command(r, "results")[3:]).model_arg or {}).get("width") for r in s004]
    assert [r.name for r in s004] == ["campaign/03_cbam", "campaign/s004_w16/03_cbam"] and widths == [None, 16]
    oof = [r for r in campaign.PLAN if "oof_teacher" in r.name]  # out-of-fold teachers: fold i left out, in order
    assert [parser.parse_args(campaign.command(r, "results")[3:]).leave_out_fold for r in oof] == \
        [f"{i}/{campaign.OOF_FOLDS}" for i in range(campaign.OOF_FOLDS)] and all(r.keep_model for r in oof)
    students = [r for r in campaign.PLAN if r.name.startswith("distill/") and "teacher" not in r.name]
    from_oof, = [r for r in students if r.name.endswith("from_oof")]
    assert from_oof.inputs() == [f"results/{r.name}.keras" for r in oof]
    assert parser.parse_args(campaign.command(from_oof, "results")[3:]).teacher_folds
    by_name = {r.name: r for r in students}  # the first pair: alone, and distilled from the two 2-hour models
    assert by_name["distill/speed_w18_alone"].inputs() == []
    assert len(by_name["distill/speed_w18_from_b120"].inputs()) == 2
    assert all(dict(parser.parse_args(campaign.command(r, "results")[3:]).model_arg) == {"width": 18}
               for r in students)
    # the honest out-of-fold teachers keep the default validation slice, which a fold teacher holds out
    oof_val = [r for r in campaign.PLAN if "oof_val_teacher" in r.name]
    parsed = [parser.parse_args(campaign.command(r, "results")[3:]) for r in oof_val]
    assert [a.leave_out_fold for a in parsed] == [f"{i}/{campaign.OOF_FOLDS}" for i in range(campaign.OOF_FOLDS)]
    assert all(a.val_fraction is None and a.seed == 0 for a in parsed)
    honest, = [r for r in students if r.name.endswith("from_oof_val")]
    assert honest.inputs() == [f"results/{r.name}.keras" for r in oof_val]
    a = parser.parse_args(campaign.command(honest, "results")[3:])
    assert a.teacher_folds and a.precompute_teachers and a.input_size == 40 and a.augment == "basic+erase"
    # the mid-size candidate stays under issue 18's 1 M parameters
    candidate, = [r for r in campaign.PLAN
                  if r.issue == 18 and r.name.startswith("speedrun/") and not r.name.startswith(campaign.MIX_FOLDER)]
    a = parser.parse_args(campaign.command(candidate, "results")[3:])
    from fer_keras import models

    net = models.build_model("speed_cnn", input_size=a.input_size, **dict(a.model_arg))
    assert net.count_params() <= 1_000_000 and candidate.int8 and candidate.keep_model
    teachers = [r for r in campaign.PLAN if r.name.startswith("speedrun/budget120")]  # issue 18's teachers
    assert len(teachers) == 2 and all(r.int8 and r.keep_model for r in teachers + students)
    papers = [r for r in campaign.PLAN if r.step[:2] in ("08", "09", "10")]
    hours = [r for r in papers if not r.name.endswith("_long")]  # the equal hour; then lightResNetl trained long
    assert hours and all(r.int8 and r.kind == "budget" and r.minutes == 60 for r in hours)
    long, = [r for r in papers if r not in hours]
    assert long.step == "08_lightresnet_l" and long.minutes == campaign.LIGHTRESNET_LONG_MINUTES and long.int8
    assert parser.parse_args(campaign.command(long, "results")[3:]).fused_bn  # no partner: the faster kernel
    assert not any("--fused-bn" in r.flags for r in campaign.PLAN if r is not long)  # series keep Keras's kernel
    assert long is campaign.PLAN[-1]  # last: it takes several sessions
    # the mix ablation in the plan is notebook 17's set 'mix', run for run: one results file for both
    mixed = [r for r in campaign.PLAN if r.name.startswith(campaign.MIX_FOLDER + "/")]
    assert [(r.name.rsplit("/", 1)[1], r.flags, r.minutes, r.cpu, r.seed) for r in mixed] == \
        [(r.name, r.flags, r.minutes, r.cpu, r.seed) for r in campaign.ablation_plan(30, which="mix")]
    for run in papers:
        assert parser.parse_args(campaign.int8_command(run, "results")[3:]).results_json == f"results/{run.name}.json"


def test_deferred_runs_keep_their_order_behind_every_other_run_but_the_long_one():
    written, plan = campaign._PLAN_IN_ORDER_WRITTEN, campaign.PLAN
    assert sorted(r.name for r in plan) == sorted(r.name for r in written)  # moved, none lost or added
    names = [r.name for r in plan]
    assert names[-1 - len(campaign.DEFERRED):-1] == list(campaign.DEFERRED) and plan[-1] is written[-1]
    rest = [r.name for r in written[:-1] if r.name not in campaign.DEFERRED]
    assert names[:len(rest)] == rest  # everything else in the order written


def test_notebook_14s_labelings_differ_in_their_labels_only():
    parser = cli.build_parser()
    for cpu in ("amx", "avx512_bf16"):  # one series on each CPU, the same four runs
        series = [r for r in campaign.PLAN if r.step.startswith("14_") and r.cpu == cpu]
        assert [r.step for r in series] == list(recipes.LABEL_RUNS)
        assert [r.name for r in series] == [f"campaign/{cpu}/{step}" for step in recipes.LABEL_RUNS]
    runs = [r for r in campaign.PLAN if r.step.startswith("14_")]
    assert {(r.kind, r.minutes, r.seed, r.flags) for r in runs} == \
        {("budget", 30, 0, campaign.LONG_FINAL_FLAGS)}  # one budget, one recipe
    configs = [recipes.step_config(r.step, "full") for r in runs]
    assert {c["label_mode"] for c in configs} == {"fer2013", "ferplus8", "ferplus8:probability", "ferm"}
    assert all(c | {"label_mode": None} == configs[0] | {"label_mode": None} for c in configs)
    assert configs[0]["model"] == recipes.SPEED_RECIPE["model"]  # the speed recipe, not S004's (too slow here)
    args = parser.parse_args(campaign.command(runs[1], "results")[3:])
    assert (args.val_fraction, args.input_size, args.augment) == (0, 40, "basic+erase")


def test_campaign_cli_bad_flags_are_one_line(capsys):
    assert cli.main(["campaign", "run"]) == 2
    assert cli.main(["campaign", "status", "--only", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)
    assert "--minutes" in err[0] and "--only nope" in err[1] and "Fix:" in err[1]


def test_a_time_run_cut_by_its_own_minutes_is_done_and_a_session_cut_is_not():
    timed, budget = PLAN[1], PLAN[0]
    cut = {"stopped_by_time_limit": True, "seconds_per_epoch": 60.0}
    assert campaign.complete(timed, cut, {"train_seconds": 19.5 * 60})  # one more epoch would pass 20 min
    assert not campaign.complete(timed, cut, {"train_seconds": 12 * 60})  # the session ended first
    assert not campaign.complete(budget, cut, {"train_seconds": 14 * 60})  # a budget run goes on to its deadline
    assert campaign.complete(budget, {"stopped_by_time_limit": False}, {})


def test_a_state_left_by_another_plan_is_started_over_not_resumed(dirs):
    results, runs = dirs
    budget_run = campaign.PlannedRun("campaign/01_baseline", "01_baseline", 20, "budget")
    cache = _state(config.run_state_dir(budget_run.out_dir(runs)))  # an older 'time' run (no budget) left it
    assert campaign.find_state(budget_run, results, runs) is None
    assert campaign.find_state(PLAN[1], results, runs) == cache  # the 'time' run it was
    (cache / "run.json").write_text(json.dumps({"args": {"seed": 0, "budget_minutes": 20}}))
    assert campaign.find_state(budget_run, results, runs) == cache
    assert campaign.find_state(campaign.PlannedRun("campaign/01_baseline", "01_baseline", 20, "budget", seed=1),
                               results, runs) is None


def test_a_series_waits_for_its_own_kind_of_cpu(dirs, monkeypatch, capsys):
    results, runs = dirs
    amx = campaign.PlannedRun("speedrun/amx/b15", "17_speed", 15, "budget", cpu="amx")
    epyc = campaign.PlannedRun("speedrun/avx512_bf16/b60", "17_speed", 60, "budget", cpu="avx512_bf16")
    avx2 = campaign.PlannedRun("speedrun/b120", "17_speed", 120, "budget", cpu="float32")
    plain = campaign.PlannedRun("campaign/01_baseline", "01_baseline", 20)
    for here, runnable in (("float32", avx2), ("amx", amx), ("avx512_bf16", epyc)):
        monkeypatch.setattr(provenance, "cpu_class", lambda here=here: here)
        ran = campaign.run_next(90, (amx, epyc, avx2, plain), results, runs, dry_run=True)
        assert [r["name"] for r in ran] == [runnable.name, plain.name]
        out = capsys.readouterr().out
        for other in {amx, epyc, avx2} - {runnable}:
            assert f"{other.name}: waits for {campaign.NEEDS_CPU[other.cpu]}" in out
    by_folder = {"/amx/": "amx", "/avx512_bf16/": "avx512_bf16"}
    for folder, cpu in by_folder.items():
        series = [r for r in campaign.PLAN if folder in r.name]
        assert series and all(r.cpu == cpu for r in series)
        # the speed recipe's and the students' models are kept (teachers, shipped models); the paper models' and the
        # ablations' are not
        assert all(r.keep_model for r in series
                   if r.name.startswith(("speedrun/", "distill/")) and "/ablation" not in r.name)
    assert all(r.cpu == "float32" for r in campaign.PLAN if r.name.startswith(("speedrun/budget120", "distill/speed")))
    assert set(campaign.NEEDS_CPU) == {r.cpu for r in campaign.PLAN} - {None}


def test_every_planned_run_names_its_cpu_and_every_committed_result_ran_on_it():
    """The equal-budget tables too (S004 path, paper models' hour, recipe ablation): a result from another kind of
    CPU would compare two amounts of compute as one."""
    results = campaign.REPO / "results"
    runs = [(run, results / f"{run.name}.json") for run in campaign.PLAN]
    runs += [(run, results / folder / f"{run.name}.json") for which, (_, _, _, folder) in campaign.ABLATIONS.items()
             for run in campaign.ablation_plan(6, which=which)]
    assert all(run.cpu in campaign.NEEDS_CPU for run, _ in runs)
    done = [(run, json.loads(path.read_text())) for run, path in runs if path.is_file()]
    for run, record in done:  # a run resumed across sessions: every session whose record was kept, too
        kept = [s["provenance"] for s in record.get("sessions", []) if s["provenance"]]
        for prov in [record["provenance"]] + kept:
            ran_on = provenance.cpu_class(prov["hardware"]["cpu"]["flags"])
            assert ran_on == run.cpu, f"{run.name}: ran on {ran_on}, its series needs {run.cpu}"
    assert len(done) >= 50  # the committed results: the planned runs done and the ablations' files


def test_the_cpu_class_tells_amx_from_avx512_bf16_from_neither():
    assert provenance.cpu_class(["avx2", "avx512f", "avx512_bf16", "amx_bf16"]) == "amx"
    assert provenance.cpu_class(["avx2", "avx512f", "avx512_bf16"]) == "avx512_bf16"
    assert provenance.cpu_class(["avx2", "fma"]) == provenance.cpu_class([]) == "float32"
    assert provenance.cpu_class() in campaign.NEEDS_CPU
