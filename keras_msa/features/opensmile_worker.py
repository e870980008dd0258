"""openSMILE low-level descriptors in a child process without TensorFlow.

Loading openSMILE's native library (`libSMILEapi`) into a process that has
already loaded TensorFlow aborts with a heap corruption (`malloc(): invalid
size`), measured with opensmile 2.6.0 and TensorFlow 2.21; keras_msa imports
TensorFlow, so the extractor runs openSMILE here, as a script started by
path (so the keras_msa package, and TensorFlow with it, is never imported).

Protocol, one line per request on stdin: `<input.npy> <output.npy>`
(float32 [N] waveform in, float32 [T, D] descriptors out); the answer line is
`ok` or `error <message>`. The feature set and the sample rate are the
command-line arguments: `opensmile_worker.py egemaps|compare <rate>`.
"""

import sys

import numpy as np


def main(kind, rate):
    import opensmile

    feature_set = {"egemaps": opensmile.FeatureSet.eGeMAPSv02, "compare": opensmile.FeatureSet.ComParE_2016}[kind]
    smile = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    print(f"ready {opensmile.__version__} {feature_set.name} {len(smile.feature_names)}", flush=True)
    for line in sys.stdin:
        try:
            src, dst = line.rstrip("\n").split(" ", 1)
            x = np.load(src, allow_pickle=False).astype(np.float32)
            np.save(dst, smile.process_signal(x, rate).to_numpy(np.float32))
            print("ok", flush=True)
        except Exception as e:  # the parent reports it for this clip and goes on
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
