"""PaddleOCR recognizers in plain Paddle: StarNet (rec_mv3_tps_bilstm_ctc: TPS + MobileNetV3 + BiLSTM
+ CTC) and the same without TPS. Built and saved with paddle.jit.save by ocrgraft itself, so the
Paddle frontend always runs on real Paddle inference files.

    python -m ocrgraft.models.paddle_rec starnet OUT_DIR [--weights F.pdparams] [--legacy]

writes OUT_DIR/inference.json + inference.pdiparams (or, with --legacy, the older .pdmodel format).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

NUM_CLASSES = 37  # 36 characters (0-9a-z) + the CTC blank
NUM_FIDUCIAL = 20  # TPS control points, as in PaddleOCR's StarNet configs
SEED = 20240601


def _paddle():
    import paddle

    return paddle


def build(name: str):
    """An eval-mode Paddle layer for a zoo name, with a fixed-seed random initialization."""
    paddle = _paddle()
    nn = paddle.nn
    F = paddle.nn.functional

    def make_divisible(v, divisor=8):
        return max(divisor, int(v + divisor / 2) // divisor * divisor)

    class ConvBN(nn.Layer):
        def __init__(self, cin, cout, k, stride=1, groups=1, act=None):
            super().__init__()
            self.conv = nn.Conv2D(
                cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias_attr=False
            )
            self.bn = nn.BatchNorm2D(cout)
            self.act = act

        def forward(self, x):
            x = self.bn(self.conv(x))
            if self.act == "relu":
                return F.relu(x)
            if self.act == "hardswish":
                return F.hardswish(x)
            return x

    class SqueezeExcite(nn.Layer):
        def __init__(self, c, reduction=4):
            super().__init__()
            self.conv1 = nn.Conv2D(c, c // reduction, 1)
            self.conv2 = nn.Conv2D(c // reduction, c, 1)

        def forward(self, x):
            s = F.adaptive_avg_pool2d(x, 1)
            s = F.hardsigmoid(self.conv2(F.relu(self.conv1(s))), slope=0.2, offset=0.5)
            return x * s

    class Bottleneck(nn.Layer):
        def __init__(self, cin, mid, cout, k, stride, se, act):
            super().__init__()
            self.shortcut = cin == cout and stride == 1
            self.expand = ConvBN(cin, mid, 1, act=act)
            self.depthwise = ConvBN(mid, mid, k, stride=stride, groups=mid, act=act)
            self.se = SqueezeExcite(mid) if se else None
            self.project = ConvBN(mid, cout, 1)

        def forward(self, x):
            y = self.depthwise(self.expand(x))
            if self.se is not None:
                y = self.se(y)
            y = self.project(y)
            return x + y if self.shortcut else y

    class MobileNetV3Rec(nn.Layer):
        """MobileNetV3-small (scale 0.5) with (2,1) strides: height 32 -> 1, width / 4."""

        # kernel, expansion, out, squeeze-excite, activation, stride
        CFG = [
            (3, 16, 16, True, "relu", (2, 1)),
            (3, 72, 24, False, "relu", (2, 1)),
            (3, 88, 24, False, "relu", 1),
            (5, 96, 40, True, "hardswish", (2, 1)),
            (5, 240, 40, True, "hardswish", 1),
            (5, 120, 48, True, "hardswish", 1),
            (5, 288, 96, True, "hardswish", 1),
            (5, 576, 96, True, "hardswish", 1),
        ]

        def __init__(self, cin=3, scale=0.5):
            super().__init__()
            c = make_divisible(16 * scale)
            self.stem = ConvBN(cin, c, 3, stride=2, act="hardswish")
            blocks = []
            for k, exp, out, se, act, stride in self.CFG:
                blocks.append(
                    Bottleneck(
                        c, make_divisible(exp * scale), make_divisible(out * scale), k, stride, se, act
                    )
                )
                c = make_divisible(out * scale)
            self.blocks = nn.Sequential(*blocks)
            self.out_channels = make_divisible(576 * scale)
            self.last = ConvBN(c, self.out_channels, 1, act="hardswish")
            self.pool = nn.MaxPool2D(kernel_size=2, stride=2)

        def forward(self, x):
            return self.pool(self.last(self.blocks(self.stem(x))))

    class TPS(nn.Layer):
        """Thin-plate-spline rectification: a localization net predicts fiducial points; a grid from
        precomputed TPS matrices feeds grid_sample (Paddle's defaults: bilinear, zeros, align_corners)."""

        def __init__(self, cin=3, height=32, width=100, f=NUM_FIDUCIAL):
            super().__init__()
            self.f, self.height, self.width = f, height, width
            chans, layers = [16, 32, 64, 128], []
            for i, c in enumerate(chans):
                layers += [
                    ConvBN(cin, c, 3, act="relu"),
                    nn.AdaptiveAvgPool2D(1) if i == len(chans) - 1 else nn.MaxPool2D(2, 2),
                ]
                cin = c
            self.loc = nn.Sequential(*layers)
            self.fc1 = nn.Linear(cin, 64)
            self.fc2 = nn.Linear(64, f * 2)
            ctrl = self.fiducials()
            self.fc2.bias.set_value(ctrl.reshape(-1).astype("float32"))  # start near the identity warp
            self.fc2.weight.set_value(
                (np.random.default_rng(SEED).normal(0, 0.02, (64, f * 2))).astype("float32")
            )
            inv_delta, p_hat = self.tps_matrices(ctrl)
            self.inv_delta_c = self._constant(inv_delta)
            self.p_hat = self._constant(p_hat)

        def _constant(self, array):
            """A frozen parameter: saved with the weights in both Paddle file formats."""
            p = self.create_parameter(
                list(array.shape), default_initializer=nn.initializer.Assign(array.astype("float32"))
            )
            p.stop_gradient = True
            return p

        def fiducials(self):
            xs = np.linspace(-1.0, 1.0, self.f // 2)
            top = np.stack([xs, -np.ones(self.f // 2)], axis=1)
            bottom = np.stack([xs, np.ones(self.f // 2)], axis=1)
            return np.concatenate([top, bottom], axis=0)

        def tps_matrices(self, c):
            """inv(delta_C) and P_hat of the thin-plate spline, computed once (no matrix inverse in the
            graph)."""
            f = self.f
            dist = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=2)
            np.fill_diagonal(dist, 1.0)
            hat_c = dist**2 * np.log(dist)
            delta = np.concatenate(
                [
                    np.concatenate([np.ones((f, 1)), c, hat_c], axis=1),
                    np.concatenate([np.zeros((2, 3)), c.T], axis=1),
                    np.concatenate([np.zeros((1, 3)), np.ones((1, f))], axis=1),
                ],
                axis=0,
            )
            gx = (np.arange(-self.width, self.width, 2) + 1.0) / self.width
            gy = (np.arange(-self.height, self.height, 2) + 1.0) / self.height
            p = np.stack(np.meshgrid(gx, gy), axis=2).reshape(-1, 2)
            r = np.linalg.norm(p[:, None, :] - c[None, :, :], axis=2)
            p_hat = np.concatenate([np.ones((len(p), 1)), p, r**2 * np.log(r + 1e-6)], axis=1)
            return np.linalg.inv(delta), p_hat

        def forward(self, x):
            feat = self.loc(x).flatten(1)
            c_prime = self.fc2(F.relu(self.fc1(feat))).reshape([-1, self.f, 2])
            zeros = paddle.zeros_like(c_prime[:, :3, :])
            t = paddle.matmul(self.inv_delta_c, paddle.concat([c_prime, zeros], axis=1))
            grid = paddle.matmul(self.p_hat, t).reshape([-1, self.height, self.width, 2])
            return F.grid_sample(x, grid)

    class Recognizer(nn.Layer):
        def __init__(self, tps: bool):
            super().__init__()
            self.tps = TPS() if tps else None
            self.backbone = MobileNetV3Rec()
            self.rnn = nn.LSTM(self.backbone.out_channels, 48, num_layers=2, direction="bidirect")
            self.head = nn.Linear(96, NUM_CLASSES)

        def forward(self, x):
            if self.tps is not None:
                x = self.tps(x)
            x = self.backbone(x).squeeze(2).transpose([0, 2, 1])  # N, W/4, C
            x, _ = self.rnn(x)
            return F.softmax(self.head(x), axis=2)

    def stand_in_statistics(model):
        """Random init leaves BatchNorm at mean 0 / variance 1 and every input reads alike; measure the
        statistics on one fixed random batch and sharpen the classifier, so that text parity means
        something."""
        norms = [layer for layer in model.sublayers() if isinstance(layer, nn.BatchNorm2D)]
        for layer in norms:
            layer._momentum = 0.0  # running stats := this batch's stats
        model.train()
        with paddle.no_grad():
            model(
                paddle.to_tensor(
                    np.random.default_rng(SEED).uniform(-1, 1, (16, 3, 32, 100)).astype("float32")
                )
            )
        for layer in norms:
            layer._momentum = 0.9
        if hasattr(model, "head"):
            model.head.weight.set_value(model.head.weight * 8.0)

    paddle.seed(SEED)
    if name == "starnet":
        model = Recognizer(tps=True)
    elif name == "paddle-crnn":
        model = Recognizer(tps=False)
    elif name == "paddle-small":  # conv classifier: what the legacy .pdmodel format still saves in Paddle 3
        model = nn.Sequential(
            ConvBN(3, 16, 3, act="relu"),
            nn.MaxPool2D(2, 2),
            nn.AdaptiveAvgPool2D(1),
            nn.Flatten(),
            nn.Linear(16, NUM_CLASSES),
            nn.Softmax(),
        )
    else:
        raise ValueError(f"no Paddle zoo model '{name}'")
    stand_in_statistics(model)
    model.eval()
    return model


INPUT_SPECS = {  # None = dynamic; the TPS grid is built for a fixed 32 x 100 image
    "starnet": [None, 3, 32, 100],
    "paddle-crnn": [None, 3, 32, None],
    "paddle-small": [None, 3, 32, 100],
}


def save(name: str, out_dir: str, weights: str | None = None) -> str:
    """paddle.jit.save the zoo model; returns the path prefix of the written files."""
    paddle = _paddle()
    model = build(name)
    if weights:  # an .npz of plain arrays: the caller has read the user's .pdparams pickle safely
        with np.load(weights, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
        missing, unexpected = model.set_state_dict(state) or ([], [])
        if missing or unexpected:
            raise SystemExit(
                f"weights do not fit '{name}': missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
            )
    spec = paddle.static.InputSpec(INPUT_SPECS[name], "float32", "x")
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    prefix = os.path.join(out_dir, "inference")
    paddle.jit.save(static, prefix)
    return prefix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Save a Paddle zoo model as a Paddle inference model.")
    ap.add_argument("name", choices=sorted(INPUT_SPECS))
    ap.add_argument("out_dir")
    ap.add_argument(
        "--weights", help="an .npz of named arrays (ocrgraft reads a user's .pdparams safely into one)"
    )
    ap.add_argument("--legacy", action="store_true", help="write the older .pdmodel + .pdiparams format")
    args = ap.parse_args(argv)
    if args.legacy:
        os.environ["FLAGS_enable_pir_api"] = "0"  # must be set before paddle is imported
    save(args.name, args.out_dir, args.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
