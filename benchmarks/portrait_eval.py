"""Portrait Mode on real photos, against a naive Gaussian-blur baseline measured side by side in the same run.

    flock /tmp/albumen-heavy.lock timeout 900 .venv/bin/python benchmarks/portrait_eval.py [--repeats 5]

Photos: scikit-image astronaut and camera, matplotlib's grace_hopper (people); coffee, chelsea, rocket, and
scikit-learn's china / flower (no person: salient fallback or "no subject"). Outputs go to build/portrait_eval/.

Baseline ("naive"): the same MediaPipe person mask, upsampled bilinearly, over a full-resolution Gaussian blur of the
whole photo (sigma = half our disc radius at infinity, so both blur about as much), which is what a quick portrait
filter does. Ours: ``albumen.vision.portrait.render_portrait`` at its defaults (f/2.8, 85 mm).

Measures:
- edge halo: each portrait's person (MediaPipe's soft mask as the true alpha) is composited over another real photo B.
  The ideal output next to the subject is B blurred as if the subject were not there (each method's own kernel applied
  to B alone). Halo = mean |output - ideal| (0-255) over the ring just outside the person, up to one blur radius.
  Subject colour smeared into the background (the "glow" of naive portrait blur) shows up here.
- subject sharpness: mean |Laplacian| of the output / of the original, on the person's core and on its rim (the
  6 pixels inside the outline: hair, shoulders). 1.0 = untouched; lower = the subject got blurred.
- background blur: the same ratio far from the person (lower = more blur; both methods should be similar).
- time: render time per photo and per megapixel, ours and naive interleaved (A/B, median of ``--repeats``), including
  a 12 MP (4000x3000) upscaled astronaut, plus file read/write for the 12 MP JPEG.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from albumen.vision.portrait import NoSubjectFound, PortraitConfig, PortraitMode, render_portrait
from albumen.vision.portrait import render as render_module
from albumen.vision.portrait.composite import composite_everywhere
from albumen.vision.portrait.layered import layered_bokeh
from albumen.vision.portrait.render import working_size
from albumen.vision.segmentation import MediaPipeFaceDetector, MediaPipeSelfieSegmenter

OUT = Path("build/portrait_eval")


def load_photos() -> dict[str, np.ndarray]:
    import matplotlib
    from skimage import data
    from sklearn.datasets import load_sample_images

    gray = data.camera()
    photos = {
        "astronaut": data.astronaut(),
        "grace_hopper": cv2.cvtColor(
            cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB
        ),
        "camera": np.repeat(gray[..., None], 3, axis=2),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
    }
    china, flower = load_sample_images().images
    photos.update(china=china, flower=flower)
    return {k: np.ascontiguousarray(v) for k, v in photos.items()}


PEOPLE = ("astronaut", "grace_hopper", "camera")
BACKGROUNDS = {"astronaut": "china", "grace_hopper": "flower", "camera": "coffee"}  # B for the halo composites


def naive_portrait(rgb: np.ndarray, segmenter: Any, sigma: float, work_pixels: int) -> np.ndarray:
    """Mask at working size, bilinear up, over a Gaussian blur of the whole photo at full resolution."""
    h, w = working_size(*rgb.shape[:2], work_pixels)
    prob = segmenter.segment(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))
    mask = cv2.resize(prob, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=max(sigma, 0.5))
    return cv2.blendLinear(rgb, blurred, mask, 1.0 - mask)


def detail(img: np.ndarray, where: np.ndarray) -> float:
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[where].mean())


def regions(alpha: np.ndarray, reach: float) -> dict[str, np.ndarray]:
    """Core / rim of the person, the ring outside it up to ``reach`` pixels, and the far background."""
    inside = (alpha > 0.5).astype(np.uint8)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return {
        "core": d_in > max(12.0, reach),
        "rim": (d_in > 0.5) & (d_in <= 6.0),
        "ring": (alpha < 0.02) & (d_out >= 2.0) & (d_out <= max(reach, 4.0)),
        "far": d_out > 3 * max(reach, 4.0),
    }


def our_clean_background(b: np.ndarray, radius: np.ndarray, cfg: PortraitConfig) -> np.ndarray:
    """B alone through our bokeh (same radius map, no subject to exclude), upsampled like the renderer does."""
    h, w = radius.shape
    small = cv2.resize(b, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    lin = layered_bokeh(small**2.2, np.ones((h, w), np.float32), radius,
                        bloom_threshold=cfg.bloom_threshold, bloom_gain=cfg.bloom_gain, max_layers=cfg.max_layers)
    u8 = (lin ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    return cv2.resize(u8, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR)


def label(img: np.ndarray, text: str, height: int = 360) -> np.ndarray:
    img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img)
    cv2.putText(img, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(img, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return img


def save(name: str, panels: list[np.ndarray]) -> None:
    bgr = cv2.cvtColor(np.hstack(panels), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(OUT / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])


def timed(fn) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def ab_times(ours, naive, repeats: int) -> tuple[float, float]:
    """Median seconds of ours and naive, interleaved A/B/A/B so machine noise hits both alike."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours)[1])
        b.append(timed(naive)[1])
    return statistics.median(a), statistics.median(b)


def evaluate_portrait(
    name: str, rgb: np.ndarray, photos: dict, seg: Any, faces: Any, cfg: PortraitConfig, repeats: int
) -> dict:
    res = render_portrait(rgb, cfg, seg, faces)
    scale = rgb.shape[0] / res.radius.shape[0]
    reach = res.info["radius_at_infinity_px"] * scale  # full-resolution pixels
    sigma = reach / 2.0  # a disc of radius r has standard deviation r / 2
    naive = naive_portrait(rgb, seg, sigma, cfg.work_pixels)
    alpha = seg.segment(rgb)  # the person, at full resolution, as the reference for regions
    reg = regions(alpha, reach)
    row: dict[str, Any] = {"photo": name, "size": f"{rgb.shape[1]}x{rgb.shape[0]}", "subject": res.info["subject"],
                           "radius_px": round(reach, 1)}
    for method, out in (("ours", res.image), ("naive", naive)):
        for part in ("core", "rim", "far"):
            row[f"{method}_{part}"] = round(detail(out, reg[part]) / max(detail(rgb, reg[part]), 1e-6), 3)

    # Halo: composite the person over another real photo B; compare the ring with B blurred on its own.
    b = cv2.resize(photos[BACKGROUNDS[name]], (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    a3 = alpha[..., None]
    comp = (a3 * rgb + (1 - a3) * b + 0.5).astype(np.uint8)
    res_c = render_portrait(comp, cfg, seg, faces)
    naive_c = naive_portrait(comp, seg, sigma, cfg.work_pixels)
    ring = regions(alpha, reach)["ring"]
    ideal_ours = our_clean_background(b, res_c.radius, cfg)
    ideal_naive = cv2.GaussianBlur(b, (0, 0), sigmaX=max(sigma, 0.5))
    row["ours_halo"] = round(float(np.abs(res_c.image.astype(np.float32) - ideal_ours)[ring].mean()), 2)
    row["naive_halo"] = round(float(np.abs(naive_c.astype(np.float32) - ideal_naive)[ring].mean()), 2)

    t_ours, t_naive = ab_times(
        lambda: render_portrait(rgb, cfg, seg, faces), lambda: naive_portrait(rgb, seg, sigma, cfg.work_pixels), repeats
    )
    mp = rgb.shape[0] * rgb.shape[1] / 1e6
    row.update(ours_s=round(t_ours, 3), naive_s=round(t_naive, 3), ours_s_per_mp=round(t_ours / mp, 3))

    sweep = {n: render_portrait(rgb, cfg.replace(aperture=n), seg, faces).image for n in (1.4, 2.8, 5.6, 8.0, 16.0)}
    row["far_by_aperture"] = {f"f/{n:g}": round(detail(img, reg["far"]) / max(detail(rgb, reg["far"]), 1e-6), 3)
                              for n, img in sweep.items()}
    f14, f8 = sweep[1.4], sweep[8.0]
    matte = np.repeat((cv2.resize(res.matte, (rgb.shape[1], rgb.shape[0])) * 255).astype(np.uint8)[..., None], 3, 2)
    save(name, [label(rgb, "original"), label(naive, "naive gaussian"), label(res.image, "ours f/2.8"),
                label(f14, "ours f/1.4"), label(f8, "ours f/8"), label(matte, "matte")])
    save(f"{name}_halo", [label(comp, "composite"), label(naive_c, f"naive (halo {row['naive_halo']})"),
                          label(res_c.image, f"ours (halo {row['ours_halo']})")])
    return row


def evaluate_12mp(photos: dict, seg: Any, faces: Any, cfg: PortraitConfig, repeats: int) -> dict:
    big = cv2.resize(photos["astronaut"], (4000, 4000), interpolation=cv2.INTER_CUBIC)[500:3500]  # (3000, 4000, 3)
    res = render_portrait(big, cfg, seg, faces)  # warm-up (and the timings breakdown)
    sigma = res.info["radius_at_infinity_px"] * big.shape[0] / res.radius.shape[0] / 2
    t_ours, t_naive = ab_times(
        lambda: render_portrait(big, cfg, seg, faces), lambda: naive_portrait(big, seg, sigma, cfg.work_pixels), repeats
    )
    steps = [render_portrait(big, cfg, seg, faces).info["timings_s"] for _ in range(repeats)]
    breakdown = {k: round(statistics.median(s[k] for s in steps), 3) for k in steps[0]}
    # The tiled full-resolution composite vs evaluating every pixel, interleaved in this run.
    tiled, everywhere = render_module.composite, lambda rgb, bg, a, b, keep_low: composite_everywhere(rgb, bg, a, b)
    pairs = []
    try:
        for _ in range(repeats):
            render_module.composite = tiled
            t_tiled = render_portrait(big, cfg, seg, faces).info["timings_s"]["composite"]
            render_module.composite = everywhere
            pairs.append((t_tiled, render_portrait(big, cfg, seg, faces).info["timings_s"]["composite"]))
    finally:
        render_module.composite = tiled
    comp = {"tiled_s": round(statistics.median(p[0] for p in pairs), 3),
            "everywhere_s": round(statistics.median(p[1] for p in pairs), 3)}
    src, dst = OUT / "astronaut_12mp.jpg", OUT / "astronaut_12mp_portrait.jpg"
    cv2.imwrite(str(src), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    mode = PortraitMode(cfg, seg, faces)
    reports = []
    for _ in range(3):
        dst.unlink(missing_ok=True)
        reports.append(mode.process_file(src, dst))
    file_io = {k: round(statistics.median(r[k] for r in reports), 3) for k in ("read_s", "render_s", "write_s")}
    return {"size": "4000x3000", "ours_s": round(t_ours, 3), "naive_s": round(t_naive, 3),
            "ours_s_per_mp": round(t_ours / 12, 3), "ratio_ours_over_naive": round(t_ours / t_naive, 2),
            "breakdown_s": breakdown, "composite_ab": comp, "file": file_io}


def evaluate_no_person(photos: dict, seg: Any, faces: Any, cfg: PortraitConfig) -> list[dict]:
    rows, panels = [], []
    for name in ("coffee", "chelsea", "rocket", "china", "flower"):
        rgb = photos[name]
        try:
            res, dt = timed(lambda: render_portrait(rgb, cfg, seg, faces))
            rows.append({"photo": name, "subject": res.info["subject"], "s": round(dt, 3)})
            panels.append(np.vstack([label(rgb, name, 240), label(res.image, res.info["subject"], 240)]))
        except NoSubjectFound as exc:
            rows.append({"photo": name, "subject": "none", "message": str(exc)})
            panels.append(np.vstack([label(rgb, name, 240), label(rgb // 2, "no subject found", 240)]))
    width = max(p.shape[1] for p in panels)
    save("no_person", [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0))) for p in panels])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = PortraitConfig()
    seg, faces = MediaPipeSelfieSegmenter(), MediaPipeFaceDetector()
    photos = load_photos()
    render_portrait(photos["astronaut"], cfg, seg, faces)  # load the models before timing anything
    results = {
        "config": {"aperture": cfg.aperture, "focal_length_mm": cfg.focal_length_mm, "work_pixels": cfg.work_pixels},
        "portraits": [evaluate_portrait(n, photos[n], photos, seg, faces, cfg, args.repeats) for n in PEOPLE],
        "twelve_mp": evaluate_12mp(photos, seg, faces, cfg, args.repeats),
        "no_person": evaluate_no_person(photos, seg, faces, cfg),
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    cols = ["photo", "size", "subject", "radius_px", "ours_halo", "naive_halo", "ours_core", "naive_core", "ours_rim",
            "naive_rim", "ours_far", "naive_far", "ours_s", "naive_s", "ours_s_per_mp"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in results["portraits"]:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    print("\nbackground detail left, by aperture (lower = more blur):")
    for row in results["portraits"]:
        print(f"  {row['photo']}: {json.dumps(row['far_by_aperture'])}")
    print("\n12 MP:", json.dumps(results["twelve_mp"]))
    print("no person:", json.dumps(results["no_person"]))
    print(f"\nimages and results.json in {OUT}/")


if __name__ == "__main__":
    main()
