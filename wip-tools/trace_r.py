import sys, numpy as np
sys.path.insert(0, '/work/main')
from features.synthetic import make_page, CLASSES, FS
from features.pages import normalise_page, LEADS
from features import handcrafted as H
size = tuple(int(v) for v in sys.argv[1:3]) if len(sys.argv) > 2 else (320, 512)
rs = {l: [] for l in LEADS}
for seed in range(4):
    for label in CLASSES:
        for layout in ("3x4", "6x2"):
            truth = make_page(label, seed, layout=layout)
            page = normalise_page(truth.image, size=size)
            if page.layout != layout: print('layout miss', seed, label, layout); continue
            skip = int(round(H._LABEL_SKIP * (page.lead_boxes["I"][2] - page.lead_boxes["I"][0])))
            tr = H._read_traces(page.image, [page.lead_boxes[l] for l in LEADS], skip)
            cols = 4 if layout == "3x4" else 2
            grid = {"3x4": (("I","aVR","V1","V4"),("II","aVL","V2","V5"),("III","aVF","V3","V6")),
                    "6x2": (("I","V1"),("II","V2"),("III","V3"),("aVR","V4"),("aVL","V5"),("aVF","V6"))}[layout]
            col_of = {l: c for row in grid for c, l in enumerate(row)}
            for i, lead in enumerate(LEADS):
                seconds = 10 / cols
                sig = truth.signals[lead][int(col_of[lead] * seconds * FS):int((col_of[lead] + 1) * seconds * FS)]
                level = tr.level[i]
                box_w = page.lead_boxes[lead][2] - page.lead_boxes[lead][0]
                # columns of the box after skip -> time
                n = len(level)
                t_cols = (skip + np.arange(n) + 0.5) / box_w * seconds
                idx = np.clip((t_cols * FS).astype(int), 0, len(sig) - 1)
                # box-average the truth over each column's time span
                edges = np.clip(((skip + np.arange(n + 1)) / box_w * seconds * FS).astype(int), 0, len(sig))
                truth_cols = np.array([sig[a:max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:])])
                r = np.corrcoef(level, truth_cols)[0, 1]
                rs[lead].append(r)
print({l: round(float(np.median(v)), 3) for l, v in rs.items()})
print('overall median', round(float(np.median([x for v in rs.values() for x in v])), 3), 'min', round(float(np.min([x for v in rs.values() for x in v])), 3))
