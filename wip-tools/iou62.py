import sys, numpy as np
sys.path.insert(0, '/work/main')
from features.synthetic import make_page, CLASSES
from features.pages import normalise_page
def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy; u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter
    return inter / u
for grid in (True, False):
    worst = []; layouts = {}
    for seed in range(int(sys.argv[1])):
        for label in CLASSES:
            pg = make_page(label, seed, layout="6x2", grid=grid, header_diagnosis=seed % 2 == 0)
            n = normalise_page(pg.image)
            layouts[(n.layout, n.rhythm, n.method)] = layouts.get((n.layout, n.rhythm, n.method), 0) + 1
            ious = {k: iou(n.source_boxes[k], pg.lead_boxes[k]) for k in pg.lead_boxes if k in n.source_boxes}
            m = min(ious.values()) if ious else 0
            worst.append(m)
            if m < 0.7:
                print(' ', seed, label, n.layout, n.method, round(n.skew_deg, 2), pg.meta['rotation_deg'], pg.image.size, min(ious, key=ious.get), round(m, 2))
    print('grid', grid, 'layouts found', layouts, 'min IoU', round(min(worst), 3), 'median', round(float(np.median(worst)), 3))
