/**
 * Grows one CART tree (Gini, binary presence features) on a {@linkcode SparseDataset}, in time proportional
 * to the non-zeros that actually change a node's statistics rather than to reviews × features.
 *
 * Why it is fast on sparse text, where trees grow hundreds to thousands of levels deep:
 * - **One class-count table for the current node.** `counts[3f..3f+2]` holds, for the node being split,
 *   the number of distinct reviews that contain word `f` and their bootstrap weight per class. Split search
 *   reads it in O(1) per candidate word, so it costs O(words tried), not O(node size).
 * - **Only the smaller child is ever counted.** After a split, the larger child's table is the parent's
 *   minus the smaller child's rows (subtracted in place, O(non-zeros of the smaller child)); the smaller
 *   child is pushed on a stack as a row range and its table is rebuilt from its rows when it is popped.
 *   A leaf clears the table by zeroing the words of its own rows. So one table serves the whole tree and
 *   every row's non-zeros are touched O(log n) times in a balanced tree, far fewer in a deep chain.
 * - **Partition through the word → reviews index.** The reviews that contain the chosen word are found in
 *   its column (`colRows`) with a position lookup, so moving them costs O(column length) instead of a scan
 *   of the node; when the node is much smaller than the column, the node's rows are binary-searched instead.
 *
 * Semantics follow scikit-learn's `RandomForestClassifier` with `criterion="gini"`: bootstrap weights
 * (each of n draws adds one to a review's weight), candidate words drawn without replacement from the
 * whole vocabulary, `maxFeatures` counting constant words too but continuing past it until one non-constant
 * word was seen, `minSamplesLeaf` counted in distinct reviews, a pure node is a leaf, ties keep the first
 * best candidate, feature importance = weighted impurity decrease normalised per tree.
 *
 * Everything random comes from `treeRng(seed, treeIndex)`, so a tree does not depend on which worker builds
 * it or on the trees built before it.
 *
 * @module
 */
import { treeRng } from "./rng.ts";
import type { SparseDataset } from "./sparse_dataset.ts";

/** Resolved per-tree settings. */
export interface TreeSettings {
  /** Candidate words visited per split (already resolved from "sqrt" etc.), 1 to numFeatures. */
  mtry: number;
  /** Maximum depth; 0 = unlimited. The root is at depth 0. */
  maxDepth: number;
  /** Minimum distinct reviews in each child of a split. */
  minSamplesLeaf: number;
  /** Draw a bootstrap sample per tree (else every review has weight 1). */
  bootstrap: boolean;
  /** Forest seed. */
  seed: number;
}

/**
 * One grown tree, in pre-order, two Int32 slots per node (8 bytes: a 100-tree forest on 3.6M reviews has
 * ~170M nodes, so the node size decides whether the model fits in memory next to the data):
 * - internal node `i`: `nodes[2i]` = the word tested (>= 0), `nodes[2i+1]` = index of the right child
 *   (reviews with the word); the left child (reviews without it) is `i + 1`;
 * - leaf: `nodes[2i]` = -1, `nodes[2i+1]` = the tree's probability of the positive class as Float32 bits
 *   (read through a `Float32Array` view of the same buffer, see {@linkcode leafValues}).
 */
export interface TreeResult {
  /** Index of the tree in the forest. */
  index: number;
  /** The nodes, two slots each (see above). */
  nodes: Int32Array<ArrayBuffer>;
  /**
   * Every node's share of positive (bootstrap-weighted) training reviews, in pre-order, quantised to
   * {@linkcode NODE_VALUE_SCALE}: what the path-contribution explanation of a prediction needs.
   */
  nodeValues: Uint16Array<ArrayBuffer>;
  /** Words with a non-zero importance in this tree, ascending. */
  importanceFeatures: Uint32Array<ArrayBuffer>;
  /** Their importance, normalised to sum 1 over the tree (empty for a single-leaf tree). */
  importanceValues: Float64Array<ArrayBuffer>;
  /** Depth of the deepest leaf. */
  maxDepth: number;
  /** Number of leaves. */
  leaves: number;
}

/**
 * Scale of {@linkcode TreeResult.nodeValues}: a node's positive share `p` is stored as
 * `round(p × NODE_VALUE_SCALE)`. A leaf's exact value stays in its node, so an explanation's contributions
 * still add up exactly to the prediction (they telescope along the path); only how the total is shared
 * among the splits of a path is rounded, by at most 1/131070 per split.
 */
export const NODE_VALUE_SCALE = 65535;

/** A `Float32Array` view of a tree's nodes: the value of leaf `i` is at `2i + 1`. */
export function leafValues(nodes: Int32Array): Float32Array {
  return new Float32Array(nodes.buffer, nodes.byteOffset, nodes.length);
}

/** Out-of-bag votes, one slot per review. */
export interface OobAccumulator {
  /** Sum over out-of-bag trees of round(P(positive) × {@linkcode OOB_SCALE}). */
  sum: Int32Array<ArrayBuffer>;
  /** Number of trees for which the review was out of bag. */
  trees: Int32Array<ArrayBuffer>;
}

/**
 * Fixed-point scale of out-of-bag votes. Each worker sums its own trees' votes (no shared writes, which
 * cost 12% of the CPU time through cache-line contention), and integer sums add up exactly in any order,
 * so the out-of-bag accuracy does not depend on which worker grew which tree. 2^16 leaves room for 32,767
 * trees in an Int32.
 */
export const OOB_SCALE = 65536;

/**
 * Partition strategy switch: the word's column is scanned when it is at most this many times longer than
 * the node, else the node's rows are binary-searched. Measured at 3.6M reviews: ~10 ns per column entry
 * (a position lookup) against ~42 ns per node row (a cache miss into the row's ids), so 4 is break-even.
 * Partitioning is about half of the training time at that size, bound by memory latency.
 */
const COLUMN_SCAN_FACTOR = 4;

/** Reusable buffers for growing trees on one dataset (one per worker). */
export class TreeBuilder {
  readonly #data: SparseDataset;
  readonly #colPtr: Uint32Array;
  readonly #colRows: Uint32Array;
  #oob: OobAccumulator | undefined;
  // In-bag rows, 4 slots each: [row, first id, end of ids, weight << 1 | label]; each node owns a
  // contiguous range. Carrying the row's pointers, weight and label along makes every scan of a node read
  // memory sequentially; looking them up per row cost three cache misses at 3.6M rows.
  readonly #rows: Uint32Array;
  readonly #pos: Int32Array; // position of a row in #rows; -1 when out of bag
  readonly #counts: Int32Array; // [distinct, weight of class 0, weight of class 1] per word
  readonly #perm: Int32Array;
  readonly #importance: Float64Array;
  readonly #stamp: Uint32Array;
  #stampValue = 0;
  // Nodes in creation order; converted to pre-order at the end.
  #feature = new Int32Array(1024);
  #left = new Int32Array(1024);
  #value = new Float32Array(1024);
  #nodes = 0;

  /**
   * @param data The dataset; its column index is built if missing.
   */
  constructor(data: SparseDataset) {
    this.#data = data;
    const { colPtr, colRows } = data.columns();
    this.#colPtr = colPtr;
    this.#colRows = colRows;
    const n = data.numRows;
    const f = data.numFeatures;
    this.#rows = new Uint32Array(4 * n);
    this.#pos = new Int32Array(n);
    this.#counts = new Int32Array(3 * f);
    this.#perm = new Int32Array(f);
    this.#importance = new Float64Array(f);
    this.#stamp = new Uint32Array(f);
  }

  /**
   * Grows tree `index` of the forest.
   *
   * @param index Tree index; with `settings.seed` it fixes every random choice.
   * @param settings Resolved settings.
   * @returns The tree in pre-order with its importances.
   */
  build(index: number, settings: TreeSettings): TreeResult {
    const data = this.#data;
    const n = data.numRows;
    const numFeatures = data.numFeatures;
    const labels = data.labels;
    const rows = this.#rows;
    const pos = this.#pos;
    const counts = this.#counts;
    const perm = this.#perm;
    const importance = this.#importance;
    const rng = treeRng(settings.seed, index);
    const { mtry, minSamplesLeaf } = settings;
    const maxDepth = settings.maxDepth > 0 ? settings.maxDepth : Infinity;

    // Bootstrap: n draws with replacement; a review's weight is how often it was drawn (counted in `pos`,
    // which then becomes the position map).
    const rowPtr = data.rowPtr;
    pos.fill(settings.bootstrap ? 0 : 1);
    if (settings.bootstrap) { for (let i = 0; i < n; i++) pos[rng.nextInt(n)]!++; }
    let inBag = 0;
    let root0 = 0;
    let root1 = 0;
    for (let r = 0; r < n; r++) {
      const w = pos[r]!;
      if (w === 0) {
        pos[r] = -1;
        continue;
      }
      const o = 4 * inBag;
      rows[o] = r;
      rows[o + 1] = rowPtr[r]!;
      rows[o + 2] = rowPtr[r + 1]!;
      rows[o + 3] = (w << 1) | labels[r]!;
      pos[r] = inBag++;
      if (labels[r] === 1) root1 += w;
      else root0 += w;
    }
    // The candidate order is restarted per tree: carrying it over would make a tree depend on the trees
    // the same worker built before it.
    for (let f = 0; f < numFeatures; f++) perm[f] = f;
    importance.fill(0);
    this.#nodes = 0;

    const stack: number[] = []; // pending smaller children: node, start, end, depth, distinct, w0, w1
    let node = this.#newNodes(1);
    let start = 0;
    let end = inBag;
    let depth = 0;
    let nD = inBag;
    let n0 = root0;
    let n1 = root1;
    let deepest = 0;
    let leaves = 0;
    this.#addRows(0, inBag, 1);

    while (true) {
      const total = n0 + n1;
      this.#value[node] = total > 0 ? n1 / total : 0;
      let best = -1;
      if (nD >= 2 * minSamplesLeaf && depth < maxDepth && n0 > 0 && n1 > 0) {
        best = this.#bestSplit(rng, nD, n0, n1, mtry, minSamplesLeaf, start, end);
      }
      if (best < 0) {
        this.#feature[node] = -1;
        leaves += 1;
        if (depth > deepest) deepest = depth;
        this.#clearRows(start, end);
        if (stack.length === 0) break;
        n1 = stack.pop()!;
        n0 = stack.pop()!;
        nD = stack.pop()!;
        depth = stack.pop()!;
        end = stack.pop()!;
        start = stack.pop()!;
        node = stack.pop()!;
        this.#addRows(start, end, 1);
        continue;
      }

      // Split: left = reviews without the word, right = reviews with it.
      const o = 3 * best;
      const dR = counts[o]!;
      const r0 = counts[o + 1]!;
      const r1 = counts[o + 2]!;
      const dL = nD - dR;
      const l0 = n0 - r0;
      const l1 = n1 - r1;
      const wL = l0 + l1;
      const wR = r0 + r1;
      importance[best]! += (l0 * l0 + l1 * l1) / wL + (r0 * r0 + r1 * r1) / wR - (n0 * n0 + n1 * n1) / total;
      const left = this.#newNodes(2);
      this.#feature[node] = best;
      this.#left[node] = left;
      const mid = this.#partition(best, start, end, dR);
      depth += 1;
      if (dR <= dL) {
        // Right is smaller: subtract it, keep going left with the table, push right.
        this.#addRows(mid, end, -1);
        stack.push(left + 1, mid, end, depth, dR, r0, r1);
        node = left;
        end = mid;
        nD = dL;
        n0 = l0;
        n1 = l1;
      } else {
        this.#addRows(start, mid, -1);
        stack.push(left, start, mid, depth, dL, l0, l1);
        node = left + 1;
        start = mid;
        nD = dR;
        n0 = r0;
        n1 = r1;
      }
    }

    if (settings.bootstrap) this.#scoreOutOfBag();
    return { index, ...this.#preorder(), ...this.#sparseImportance(), maxDepth: deepest, leaves };
  }

  /** Allocates `k` consecutive nodes, returns the first. */
  #newNodes(k: number): number {
    const first = this.#nodes;
    if (first + k > this.#feature.length) {
      const grow = <T extends Int32Array | Float32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.#feature = grow(this.#feature, (n) => new Int32Array(n));
      this.#left = grow(this.#left, (n) => new Int32Array(n));
      this.#value = grow(this.#value, (n) => new Float32Array(n));
    }
    this.#nodes += k;
    return first;
  }

  /** Adds (sign 1) or subtracts (sign -1) the rows at positions `start..end` to the count table. */
  #addRows(start: number, end: number, sign: 1 | -1): void {
    const ids = this.#data.ids;
    const rows = this.#rows;
    const counts = this.#counts;
    for (let o = 4 * start, stop = 4 * end; o < stop; o += 4) {
      const packed = rows[o + 3]!;
      const w = sign * (packed >>> 1);
      const c = 1 + (packed & 1);
      for (let k = rows[o + 1]!, last = rows[o + 2]!; k < last; k++) {
        const t = 3 * ids[k]!;
        counts[t]! += sign;
        counts[t + c]! += w;
      }
    }
  }

  /** Zeroes the table entries of the rows at positions `start..end` (the table then is all zero again). */
  #clearRows(start: number, end: number): void {
    const ids = this.#data.ids;
    const rows = this.#rows;
    const counts = this.#counts;
    for (let o = 4 * start, stop = 4 * end; o < stop; o += 4) {
      for (let k = rows[o + 1]!, last = rows[o + 2]!; k < last; k++) {
        const t = 3 * ids[k]!;
        counts[t] = 0;
        counts[t + 1] = 0;
        counts[t + 2] = 0;
      }
    }
  }

  /**
   * Visits candidate words in random order and returns the one with the best Gini decrease, or -1 if no
   * word splits the node with at least `minSamplesLeaf` reviews on each side.
   */
  #bestSplit(
    rng: ReturnType<typeof treeRng>,
    nD: number,
    n0: number,
    n1: number,
    mtry: number,
    minSamplesLeaf: number,
    start: number,
    end: number,
  ): number {
    const counts = this.#counts;
    const perm = this.#perm;
    const numFeatures = perm.length;
    const total = n0 + n1;
    let best = -1;
    let bestProxy = -Infinity;
    let nonConstant = false;
    let drawn = 0;
    while (drawn < numFeatures && (drawn < mtry || !nonConstant)) {
      if (drawn === mtry && !nonConstant && this.#identicalRows(start, end)) return -1;
      // Partial Fisher-Yates: perm[0..drawn) are this node's draws so far, without replacement.
      const j = drawn + rng.nextInt(numFeatures - drawn);
      const f = perm[j]!;
      perm[j] = perm[drawn]!;
      perm[drawn] = f;
      drawn += 1;
      const o = 3 * f;
      const d = counts[o]!;
      if (d === 0 || d === nD) continue; // constant in this node
      nonConstant = true;
      if (d < minSamplesLeaf || nD - d < minSamplesLeaf) continue;
      const r0 = counts[o + 1]!;
      const r1 = counts[o + 2]!;
      const l0 = n0 - r0;
      const l1 = n1 - r1;
      // Maximising this proxy minimises the children's weighted Gini impurity (scikit-learn's proxy).
      const proxy = (r0 * r0 + r1 * r1) / (r0 + r1) + (l0 * l0 + l1 * l1) / (total - r0 - r1);
      if (proxy > bestProxy) {
        bestProxy = proxy;
        best = f;
      }
    }
    return best;
  }

  /**
   * Whether every row of the node has the same words: then no word splits it, and drawing through the
   * whole vocabulary to find that out is skipped (duplicate and empty reviews make such nodes common).
   */
  #identicalRows(start: number, end: number): boolean {
    const ids = this.#data.ids;
    const rows = this.#rows;
    const a = rows[4 * start + 1]!;
    const length = rows[4 * start + 2]! - a;
    for (let o = 4 * (start + 1), stop = 4 * end; o < stop; o += 4) {
      const b = rows[o + 1]!;
      if (rows[o + 2]! - b !== length) return false;
      for (let k = 0; k < length; k++) if (ids[a + k] !== ids[b + k]) return false;
    }
    return true;
  }

  /**
   * Moves the node's rows that contain word `f` to the end of its range and returns where they start.
   * `withWord` is their known count.
   */
  #partition(f: number, start: number, end: number, withWord: number): number {
    const rows = this.#rows;
    const pos = this.#pos;
    const mid = end - withWord;
    let boundary = end;
    const colStart = this.#colPtr[f]!;
    const colEnd = this.#colPtr[f + 1]!;
    if (colEnd - colStart <= (end - start) * COLUMN_SCAN_FACTOR) {
      const colRows = this.#colRows;
      for (let k = colStart; k < colEnd && boundary > mid; k++) {
        const p = pos[colRows[k]!]!;
        if (p < start || p >= boundary) continue; // not in this node (or out of bag)
        boundary -= 1;
        this.#swap(p, boundary);
      }
    } else {
      const ids = this.#data.ids;
      let p = start;
      while (p < boundary) {
        // Binary search of f in the row's ascending ids.
        let lo = rows[4 * p + 1]!;
        const stop = rows[4 * p + 2]!;
        let hi = stop;
        while (lo < hi) {
          const m = (lo + hi) >>> 1;
          if (ids[m]! < f) lo = m + 1;
          else hi = m;
        }
        if (lo < stop && ids[lo] === f) {
          boundary -= 1;
          this.#swap(p, boundary);
        } else {
          p += 1;
        }
      }
    }
    if (boundary !== mid) {
      throw new Error(`tree builder: partition found ${end - boundary} rows, expected ${withWord}`);
    }
    return mid;
  }

  /** Swaps the rows at positions `p` and `q`. */
  #swap(p: number, q: number): void {
    const rows = this.#rows;
    const a = 4 * p;
    const b = 4 * q;
    for (let k = 0; k < 4; k++) {
      const t = rows[a + k]!;
      rows[a + k] = rows[b + k]!;
      rows[b + k] = t;
    }
    this.#pos[rows[a]!] = p;
    this.#pos[rows[b]!] = q;
  }

  /** Converts the creation-order nodes to pre-order (left child next to its parent, for cache locality). */
  #preorder(): Pick<TreeResult, "nodes" | "nodeValues"> {
    const nodes = new Int32Array(2 * this.#nodes);
    const values = leafValues(nodes);
    const nodeValues = new Uint16Array(this.#nodes);
    const pending: number[] = [0, -1]; // (old node, new index of the parent whose right child it is)
    let next = 0;
    while (pending.length > 0) {
      const parentSlot = pending.pop()!;
      let old = pending.pop()!;
      if (parentSlot >= 0) nodes[2 * parentSlot + 1] = next;
      // Walk down the left spine, deferring right children.
      while (true) {
        const i = next++;
        const f = this.#feature[old]!;
        nodes[2 * i] = f;
        nodeValues[i] = Math.round(this.#value[old]! * NODE_VALUE_SCALE);
        if (f < 0) {
          values[2 * i + 1] = this.#value[old]!;
          break;
        }
        const left = this.#left[old]!;
        pending.push(left + 1, i);
        old = left;
      }
    }
    return { nodes, nodeValues };
  }

  /** The tree's non-zero importances, normalised to sum 1, then resets the buffer. */
  #sparseImportance(): Pick<TreeResult, "importanceFeatures" | "importanceValues"> {
    const importance = this.#importance;
    let nonZero = 0;
    let sum = 0;
    for (let f = 0; f < importance.length; f++) {
      const v = importance[f]!;
      if (v > 0) {
        nonZero += 1;
        sum += v;
      }
    }
    const importanceFeatures = new Uint32Array(nonZero);
    const importanceValues = new Float64Array(nonZero);
    let k = 0;
    for (let f = 0; f < importance.length; f++) {
      const v = importance[f]!;
      if (v > 0) {
        importanceFeatures[k] = f;
        importanceValues[k++] = v / sum;
      }
    }
    return { importanceFeatures, importanceValues };
  }

  /**
   * The out-of-bag votes of the trees built so far (bootstrap only), and restarts them; undefined if no
   * bootstrap tree was built.
   */
  takeOutOfBag(): OobAccumulator | undefined {
    const oob = this.#oob;
    this.#oob = undefined;
    return oob;
  }

  /** Adds this tree's vote for every out-of-bag review to the builder's own accumulators. */
  #scoreOutOfBag(): void {
    const n = this.#data.numRows;
    const oob = this.#oob ??= { sum: new Int32Array(n), trees: new Int32Array(n) };
    const { rowPtr, ids, numRows } = this.#data;
    const pos = this.#pos;
    const stamp = this.#stamp;
    const feature = this.#feature;
    const left = this.#left;
    const value = this.#value;
    for (let r = 0; r < numRows; r++) {
      if (pos[r] !== -1) continue;
      // Marking the review's words makes each node test O(1).
      const mark = ++this.#stampValue >>> 0 || this.#resetStamps();
      for (let k = rowPtr[r]!, stop = rowPtr[r + 1]!; k < stop; k++) stamp[ids[k]!] = mark;
      let i = 0;
      let f = feature[0]!;
      while (f >= 0) {
        i = stamp[f] === mark ? left[i]! + 1 : left[i]!;
        f = feature[i]!;
      }
      oob.sum[r]! += Math.round(value[i]! * OOB_SCALE);
      oob.trees[r]! += 1;
    }
  }

  /** Called when the stamp counter wraps around 2^32: clears the marks and restarts at 1. */
  #resetStamps(): number {
    this.#stamp.fill(0);
    this.#stampValue = 1;
    return 1;
  }
}
