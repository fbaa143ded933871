#!/usr/bin/python3
"""Peers of the pipeline benchmark (`deno task bench`): trains and scores one peer model on the same
reviews and the same train/test split as the project's forest, and prints one JSON object on stdout.

Peers:
  sklearn-forest  scikit-learn RandomForestClassifier on the project's own features: its vocabulary
                  (terms.txt written by the bench's train step) as binary presence features of the
                  processed tokens and their bigrams, i.e. exactly what the project's forest sees.
  tfidf-lr        scikit-learn TfidfVectorizer(ngram_range=(1, 2)) + LogisticRegression on the raw
                  title + text.
  tfidf-char-lr   TF-IDF of character 2-5-grams (within word boundaries, sublinear term frequency, min_df 2)
                  + LogisticRegression (C=4, as tfidf-wc-lr), on the raw title + text.
  tfidf-wc-lr     TF-IDF of word 1-2-grams and of character 2-5-grams (within word boundaries), both with
                  sublinear term frequency, side by side + LogisticRegression (C=4), on the raw title + text.
  nbsvm           NB-SVM (Wang & Manning 2012, "Baselines and Bigrams"): binary word 1-2-gram features
                  scaled by their naive-Bayes log-count ratio (smoothing 1), then a linear classifier; the
                  logistic-loss variant (liblinear, C=1), which gives probabilities.
  fasttext        the fastText CLI (`supervised -wordNgrams 2`) on the raw title + text, lowercased, with
                  punctuation split off as fastText's own classification example does.

In the feature study (below), sklearn-forest reads the raw title + text too: binary word 1-2-gram features
with the project forest's vocabulary settings (the 20,000 most frequent terms seen in at least 2 reviews),
100 trees, as a user would run scikit-learn's forest on the same reviews.

"Same reviews": the processed files hold every review that had tokens; the raw text of exactly those
reviews is read from data/batches/*.csv and data/raw/test.csv minus the lines the preprocess stages
rejected (their *.rejects.csv), and the labels are checked to line up row for row.

Train time is what the project's train time covers: vectorizing the training text and fitting.

With --predictions PATH a peer also writes the positive probability of each test review, one per line in
test order, so the bench can compare it with ours review by review (a paired margin).

Study mode (`deno task feature_study`): `--study FILE --out FILE` reads reviews as `label<TAB>source<TAB>
holdout flags<TAB>title and text` lines (label 1/2; source a number; one 0/1 flag per random split, 1 = held
out), trains the peer on each random split and once per source left out, and writes one JSON object:
{"random": [[p, ...] per split, held-out reviews in file order], "loso": [p per review], "train_seconds":
[per fit]}.

Usage: /usr/bin/python3 tools/bench_peers.py --peer NAME --root DIR [--model-dir DIR] [--trees N]
       [--jobs N] [--fasttext PATH] [--timeout S] [--predictions PATH]
       /usr/bin/python3 tools/bench_peers.py --peer NAME --study FILE --out FILE [--jobs N] [--fasttext PATH]
Needs scikit-learn (Debian: python3-sklearn) and, for fasttext, the fastText CLI (Debian: fasttext);
`make bench-deps` installs both.
"""

import argparse
import csv
import glob
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

PEERS = ("sklearn-forest", "tfidf-lr", "tfidf-char-lr", "tfidf-wc-lr", "nbsvm", "fasttext")
# The peers the feature study runs on its own splits, from the raw text.
STUDY_PEERS = ("sklearn-forest", "tfidf-lr", "tfidf-char-lr", "tfidf-wc-lr", "nbsvm", "fasttext")


class PeerError(Exception):
    """An expected failure: printed as one `error: ...` line, exit code 1."""


def batch_index(path):
    match = re.search(r"train_batch_(\d+)\.(?:tsv|csv)$", path)
    return int(match.group(1)) if match else -1


def processed_batches(root):
    paths = sorted(glob.glob(os.path.join(root, "data/processed/train_batch_*.tsv")), key=batch_index)
    if not paths:
        raise PeerError(f"no processed batches in {root}/data/processed; run the bench's pipeline first")
    return paths


def read_processed(path):
    """Labels (1/2) and token strings of a processed file (`<label>\\t<tokens>` per line)."""
    labels, docs = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            label, _, tokens = line.rstrip("\n").partition("\t")
            labels.append(int(label))
            docs.append(tokens)
    return labels, docs


def rejected_lines(rejects_path):
    """Source line numbers a preprocess stage rejected (no tokens, bad CSV)."""
    if not os.path.exists(rejects_path):
        return set()
    with open(rejects_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # header: line,reason,raw
        return {int(row[0]) for row in reader if row}


def read_raw(csv_path, rejects_path):
    """Labels and `title text` of the CSV lines the processed file kept, in order."""
    skip = rejected_lines(rejects_path)
    labels, texts = [], []
    with open(csv_path, encoding="utf-8", newline="") as handle:
        # One record per physical line (newlines inside fields are written as the two characters \n).
        for number, line in enumerate(handle, start=1):
            if number in skip:
                continue
            row = next(csv.reader([line]))
            labels.append(int(row[0]))
            texts.append((row[1] + " " + row[2]).replace("\\n", " "))
    return labels, texts


def processed_split(root):
    train_labels, train_docs = [], []
    for path in processed_batches(root):
        labels, docs = read_processed(path)
        train_labels += labels
        train_docs += docs
    test_labels, test_docs = read_processed(os.path.join(root, "data/processed/test.tsv"))
    return train_labels, train_docs, test_labels, test_docs


def raw_split(root):
    """Raw text of the same train and test reviews as the processed files, checked label by label."""
    train_labels, train_texts = [], []
    expected_train = []
    for path in processed_batches(root):
        index = batch_index(path)
        labels, texts = read_raw(
            os.path.join(root, f"data/batches/train_batch_{index}.csv"),
            os.path.join(root, f"data/processed/train_batch_{index}.rejects.csv"),
        )
        train_labels += labels
        train_texts += texts
        expected_train += read_processed(path)[0]
    test_labels, test_texts = read_raw(
        os.path.join(root, "data/raw/test.csv"), os.path.join(root, "data/processed/test.rejects.csv")
    )
    expected_test = read_processed(os.path.join(root, "data/processed/test.tsv"))[0]
    if train_labels != expected_train or test_labels != expected_test:
        raise PeerError("raw rows do not line up with the processed rows; rerun the bench from scratch")
    return train_labels, train_texts, test_labels, test_texts


def scores(test_labels, positive_probabilities):
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    truth = [1 if label == 2 else 0 for label in test_labels]
    predicted = [1 if p >= 0.5 else 0 for p in positive_probabilities]
    return {
        "accuracy": accuracy_score(truth, predicted),
        "f1": f1_score(truth, predicted),
        "roc_auc": roc_auc_score(truth, positive_probabilities),
    }


def max_rss_bytes(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss * 1024  # Linux reports KiB


def fit_and_predict(vectorizer, model, train_labels, train_docs, test_docs, learn_vocabulary=True):
    """Vectorizes the training docs (`fit_transform` when the vectorizer learns its vocabulary from them, else
    `transform`), fits `model` and returns (positive probabilities of the test docs, timings)."""
    vectorize_train = vectorizer.fit_transform if learn_vocabulary else vectorizer.transform
    started = time.perf_counter()
    x_train = vectorize_train(train_docs)
    vectorize_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(x_train, train_labels)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    positive = list(model.classes_).index(2)
    probabilities = model.predict_proba(vectorizer.transform(test_docs))[:, positive].tolist()
    predict_seconds = time.perf_counter() - started
    return probabilities, {
        "vectorize_seconds": vectorize_seconds,
        "fit_seconds": fit_seconds,
        "train_seconds": vectorize_seconds + fit_seconds,
        "predict_seconds": predict_seconds,
        "features": x_train.shape[1],
    }


def fit_and_score(vectorizer, model, split, learn_vocabulary, predictions=None):
    """A scikit-learn peer's result on the bench's split: timings and scores, with `fit_and_predict`.
    `split` is (train labels, train docs, test labels, test docs)."""
    train_labels, train_docs, test_labels, test_docs = split
    probabilities, timings = fit_and_predict(vectorizer, model, train_labels, train_docs, test_docs, learn_vocabulary)
    write_predictions(predictions, probabilities)
    return {
        "train_rows": len(train_labels),
        "test_rows": len(test_labels),
        **timings,
        **scores(test_labels, probabilities),
        "peak_rss_bytes": max_rss_bytes(),
    }


def write_predictions(path, probabilities):
    """One positive probability per line, in test order (the bench's paired comparison reads them)."""
    if path is None:
        return
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{p:.6f}\n" for p in probabilities)


def sklearn_forest(args):
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import CountVectorizer

    terms_path = os.path.join(args.model_dir, "terms.txt")
    if not os.path.exists(terms_path):
        raise PeerError(f"{terms_path} not found; the bench's train step writes it")
    with open(terms_path, encoding="utf-8") as handle:
        terms = [line.rstrip("\n") for line in handle if line.strip()]
    split = processed_split(args.root)

    def analyze(doc):
        # The project's terms: every token, then each adjacent pair joined by a space (lib/features/vectorizer.ts).
        tokens = [token for token in doc.split(" ") if token]
        return tokens + [a + " " + b for a, b in zip(tokens, tokens[1:])]

    vectorizer = CountVectorizer(vocabulary=terms, binary=True, analyzer=analyze, dtype=np.float32)
    model = RandomForestClassifier(n_estimators=args.trees, n_jobs=args.jobs, random_state=42)
    # The vocabulary is the project's terms: the vectorizer only transforms.
    return fit_and_score(vectorizer, model, split, learn_vocabulary=False, predictions=args.predictions)


def tfidf_lr_model():
    """TF-IDF of word 1-2-grams + logistic regression: (vectorizer, model)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    # max_iter above the default 100 so lbfgs converges on millions of n-gram features.
    return TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000)


def tfidf_char_lr_model():
    """TF-IDF of character 2-5-grams + logistic regression: (vectorizer, model). The character half of
    tfidf-wc-lr on its own, with its settings (C=4 was not tuned for characters alone)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    return vectorizer, LogisticRegression(C=4, max_iter=2000)


def tfidf_wc_lr_model():
    """TF-IDF of word 1-2-grams beside TF-IDF of character 2-5-grams + logistic regression: (vectorizer, model).
    Sublinear term frequency (1 + log tf) on both, as usual for character n-grams, which repeat a lot."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

    vectorizer = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        # char_wb: n-grams inside word boundaries (padded with a space), so they never span two words.
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
    ])
    # C=4: on the development reviews C=1 scored 87.5 / 83.3 (random split / leave one source out), C=4
    # 88.3 / 84.5, C=10 88.4 / 84.5; the peer gets its better setting.
    return vectorizer, LogisticRegression(C=4, max_iter=2000)


class NBLogisticRegression:
    """NB-SVM's classifier (Wang & Manning 2012) with the logistic loss: the naive-Bayes log-count ratio
    r = log((p / |p|_1) / (q / |q|_1)), p and q the smoothed (alpha) feature counts of the positive and the
    negative training reviews, scales every feature, and a linear classifier is fitted on the scaled
    features. The scaling is part of fitting, so `fit` computes it and `predict_proba` applies it."""

    def __init__(self, alpha=1.0, C=1.0):
        self.alpha = alpha
        self.C = C

    def fit(self, x, labels):
        import numpy as np
        from scipy import sparse
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels)
        positive = y == 2
        p = self.alpha + np.asarray(x[positive].sum(axis=0)).ravel()
        q = self.alpha + np.asarray(x[~positive].sum(axis=0)).ravel()
        self.ratio_ = sparse.diags(np.log((p / p.sum()) / (q / q.sum())))
        self.model_ = LogisticRegression(C=self.C, solver="liblinear").fit(x @ self.ratio_, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, x):
        return self.model_.predict_proba(x @ self.ratio_)


def nbsvm_model():
    """NB-SVM on binary word 1-2-grams, as the paper's NBSVM-bi: (vectorizer, model)."""
    import numpy as np
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(ngram_range=(1, 2), binary=True, dtype=np.float64), NBLogisticRegression()


SKLEARN_TEXT_PEERS = {
    "tfidf-lr": tfidf_lr_model,
    "tfidf-char-lr": tfidf_char_lr_model,
    "tfidf-wc-lr": tfidf_wc_lr_model,
    "nbsvm": nbsvm_model,
}


def forest_text_model(trees, jobs):
    """scikit-learn's forest on raw text, for the feature study: (vectorizer, model). Binary word 1-2-grams
    with the project forest's vocabulary settings (lib/features/vectorizer.ts: 20,000 terms, min_df 2)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True, min_df=2, max_features=20000, dtype=np.float32)
    return vectorizer, RandomForestClassifier(n_estimators=trees, n_jobs=jobs, random_state=42)


def sklearn_text_peer(args):
    vectorizer, model = SKLEARN_TEXT_PEERS[args.peer]()
    return fit_and_score(vectorizer, model, raw_split(args.root), learn_vocabulary=True, predictions=args.predictions)


_PUNCTUATION = re.compile(r"([.,!?()])")
_DROPPED = re.compile(r"[\";:]|<br\s*/?>")


def fasttext_text(text):
    """Lowercase and split off punctuation as fastText's classification-example.sh does."""
    text = _DROPPED.sub(" ", text.lower()).replace("'", " ' ")
    return " ".join(_PUNCTUATION.sub(r" \1 ", text).split())


def run_fasttext(args, arguments, **kwargs):
    try:
        return subprocess.run(
            [args.fasttext, *arguments], check=True, timeout=args.timeout, capture_output=True, text=True, **kwargs
        )
    except FileNotFoundError as error:
        raise PeerError(f"{args.fasttext} not found; install fastText with `make bench-deps`") from error
    except subprocess.CalledProcessError as error:
        last = (error.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise PeerError(f"fasttext {arguments[0]} failed: {last[0]}") from error


def fasttext_fit_predict(args, train_labels, train_texts, test_texts, work_dir):
    """Trains the fastText CLI and returns (positive probabilities of the test texts, timings)."""
    with tempfile.TemporaryDirectory(dir=work_dir) as work:
        train_path = os.path.join(work, "train.txt")
        test_path = os.path.join(work, "test.txt")
        with open(train_path, "w", encoding="utf-8") as handle:
            for label, text in zip(train_labels, train_texts):
                handle.write(f"__label__{label} {fasttext_text(text)}\n")
        with open(test_path, "w", encoding="utf-8") as handle:
            for text in test_texts:
                handle.write(fasttext_text(text) + "\n")
        model = os.path.join(work, "model")
        started = time.perf_counter()
        run_fasttext(
            args,
            ["supervised", "-input", train_path, "-output", model, "-wordNgrams", "2", "-thread", str(args.jobs),
             "-verbose", "0"],
        )
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        output = run_fasttext(args, ["predict-prob", model + ".bin", test_path, "2"]).stdout
        predict_seconds = time.perf_counter() - started
    probabilities = []
    for line in output.splitlines():
        words = line.split()
        labels = dict(zip(words[0::2], (float(p) for p in words[1::2])))
        probability = labels.get("__label__2", 1.0 - labels.get("__label__1", 0.5))
        # fastText rounds a sure prediction to 1.00001 (and so 1 minus it below 0): clamp to a probability.
        probabilities.append(min(1.0, max(0.0, probability)))
    if len(probabilities) != len(test_texts):
        raise PeerError(f"fasttext predicted {len(probabilities)} rows for {len(test_texts)} test reviews")
    return probabilities, {"train_seconds": train_seconds, "predict_seconds": predict_seconds}


def fasttext(args):
    train_labels, train_texts, test_labels, test_texts = raw_split(args.root)
    probabilities, timings = fasttext_fit_predict(args, train_labels, train_texts, test_texts, args.model_dir)
    write_predictions(args.predictions, probabilities)
    return {
        "train_rows": len(train_labels),
        "test_rows": len(test_labels),
        **timings,
        **scores(test_labels, probabilities),
        # The CLI is a child process: its peak, not this script's.
        "peak_rss_bytes": max_rss_bytes(resource.RUSAGE_CHILDREN),
    }


def read_study(path):
    """The feature study's reviews: (labels, sources, holdout flags, texts)."""
    labels, sources, flags, texts = [], [], [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t", 3)
            if len(fields) != 4 or fields[0] not in ("1", "2") or not fields[1].isdigit() \
                    or not set(fields[2]) <= {"0", "1"}:
                raise PeerError(f"{path} line {number} is not label<TAB>source<TAB>flags<TAB>text")
            labels.append(int(fields[0]))
            sources.append(int(fields[1]))
            flags.append(fields[2])
            texts.append(fields[3])
    if not labels or len({len(f) for f in flags}) != 1:
        raise PeerError(f"{path} has no reviews or lines with different numbers of split flags")
    return labels, sources, flags, texts


def study(args):
    """Every fit of the feature study for one peer: each random split, then each source left out."""
    labels, sources, flags, texts = read_study(args.study)
    work_dir = os.path.dirname(os.path.abspath(args.out))

    def fit(train_rows, test_rows):
        train_labels = [labels[i] for i in train_rows]
        train_texts = [texts[i] for i in train_rows]
        test_texts = [texts[i] for i in test_rows]
        if args.peer == "fasttext":
            return fasttext_fit_predict(args, train_labels, train_texts, test_texts, work_dir)
        if args.peer == "sklearn-forest":
            vectorizer, model = forest_text_model(args.trees, args.jobs)
        else:
            vectorizer, model = SKLEARN_TEXT_PEERS[args.peer]()
        return fit_and_predict(vectorizer, model, train_labels, train_texts, test_texts)

    random, train_seconds = [], []
    for split in range(len(flags[0])):
        held = [i for i, f in enumerate(flags) if f[split] == "1"]
        kept = [i for i, f in enumerate(flags) if f[split] == "0"]
        probabilities, timings = fit(kept, held)
        random.append([round(p, 6) for p in probabilities])
        train_seconds.append(timings["train_seconds"])
    loso = [0.0] * len(labels)
    for source in sorted(set(sources)):
        held = [i for i, s in enumerate(sources) if s == source]
        kept = [i for i, s in enumerate(sources) if s != source]
        probabilities, timings = fit(kept, held)
        for i, p in zip(held, probabilities):
            loso[i] = round(p, 6)
        train_seconds.append(timings["train_seconds"])
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump({"random": random, "loso": loso, "train_seconds": train_seconds}, handle)
    return {"fits": len(train_seconds), "train_seconds": sum(train_seconds)}


def versions(fasttext_path):
    import numpy
    import scipy
    import sklearn

    text = f"Python {sys.version.split()[0]}, scikit-learn {sklearn.__version__}, NumPy {numpy.__version__}, "
    text += f"SciPy {scipy.__version__}"
    if os.path.exists(fasttext_path):
        # The CLI has no --version; the Debian package version is the best name for it.
        try:
            package = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fasttext"], capture_output=True,
                                     text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            package = ""
        text += f", fastText {package or '(version unknown)'}"
    return {"versions": text}


def main(argv):
    parser = argparse.ArgumentParser(description="Train and score one peer of the pipeline benchmark.")
    parser.add_argument("--peer", choices=PEERS + ("versions",), required=True)
    parser.add_argument("--root", help="the bench's scratch project root (holds data/)")
    parser.add_argument("--model-dir", help="folder of the project's model (terms.txt); scratch files go here")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="threads (n_jobs, fastText -thread)")
    parser.add_argument("--fasttext", default="/usr/bin/fasttext")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to a fastText command")
    parser.add_argument("--predictions", help="write each test review's positive probability here, one a line")
    parser.add_argument("--study", help="feature-study mode: the reviews and splits (see the module docs)")
    parser.add_argument("--out", help="feature-study mode: where the probabilities go")
    args = parser.parse_args(argv)
    # The bench stops an over-budget peer with SIGTERM: exit through Python so subprocess.run kills fastText.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.peer == "versions":
            result = versions(args.fasttext)
        elif args.study:
            if args.peer not in STUDY_PEERS:
                parser.error(f"--study runs these peers: {', '.join(STUDY_PEERS)}")
            if not args.out:
                parser.error("--study needs --out")
            result = study(args)
        else:
            if not args.root:
                parser.error("--root is required")
            if not os.path.isdir(os.path.join(args.root, "data")):
                raise PeerError(f"{args.root}/data not found; --root must be the bench's scratch project root")
            args.model_dir = args.model_dir or os.path.join(args.root, "data/bench/model")
            run = sklearn_forest if args.peer == "sklearn-forest" else fasttext if args.peer == "fasttext" \
                else sklearn_text_peer
            result = run(args)
    except ImportError as error:
        print(f"error: {error.name or error} is not installed for {sys.executable}; run `make bench-deps`",
              file=sys.stderr)
        return 1
    except (PeerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as error:
        print(f"error: fasttext ran over its {error.timeout:.0f} s budget", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
