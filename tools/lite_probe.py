"""Frozen ImageNet EfficientNet-Lite0 features of the aligned face crops + a logistic regression: how well they
separate neutral from smiling photos of the demo's 68 non-test London people at 112, 160 and 224 px (4-fold
cross-validation grouped by person; test people never used). The crop-size choice of demo_lite.yaml rests on it.

    python tools/lite_probe.py
"""
import numpy as np, torch, cv2
from aufer._runtime import tune_allocator; tune_allocator()
from aufer.bundled import bundled_faces
from aufer.faces.pipeline import FacePipeline
from aufer.faces.align import align_face
from aufer.media import read_image
from aufer.models.efficientnet_lite import EfficientNetLite, normalise
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
df = bundled_faces()
from aufer.demo import DemoSettings, split_identities
sp = split_identities(list(df[df.set=="london"].identity.unique()), list(df[df.set=="canada"].identity.unique()), DemoSettings())
lon = df[(df.set=="london") & ~df.identity.isin(sp["test"])]
print(len(lon.identity.unique()), "non-test London people")
pipe = FacePipeline(crop_size=224)
crops, y, g = {112: [], 160: [], 224: []}, [], []
for r in lon.itertuples():
    img = read_image(r.path); faces = pipe.detector.detect(img)
    if not faces: continue
    for s in crops: crops[s].append(align_face(img, faces[0], s).crop)
    y.append(r.expression == "smiling"); g.append(r.identity)
y, g = np.array(y), np.array(g)
net = EfficientNetLite("lite0").eval()
for s, c in crops.items():
    x = torch.from_numpy(np.stack(c)).permute(0,3,1,2).float()/255
    with torch.no_grad(): f = net(normalise(x)).numpy()
    accs = []
    for tr, te in GroupKFold(4).split(f, y, g):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(f[tr], y[tr]); accs.append(clf.score(f[te], y[te]))
    print(s, "px frozen Lite0 + logistic regression, 4-fold grouped CV, non-test people:", np.round(accs, 3), np.mean(accs).round(3))
