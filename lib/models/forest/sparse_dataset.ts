/**
 * The training data of the forest: one row per review holding the sorted, unique vocabulary ids present in
 * it (binary features), and a 0/1 label, stored as compressed sparse rows (CSR) in `SharedArrayBuffer`s so
 * that every training worker reads the same memory instead of a copy.
 *
 * For 3.6M reviews with ~90 ids each, CSR takes ~1.3 GB; the column index built for training (word →
 * reviews, {@linkcode SparseDataset.columns}) takes as much again. No JS array or object is held per row.
 *
 * @module
 */

const CHUNK_LENGTH = 1 << 22; // ids per build chunk (16 MB): growth without copying what is already stored
const MAX_NNZ = 0xffffffff; // row pointers are Uint32

/** The column (word → reviews) index of a dataset: CSC row ids per feature, ascending. */
export interface ColumnIndex {
  /** `colPtr[f]..colPtr[f+1]` is the range of `colRows` holding the rows that contain feature `f`. */
  readonly colPtr: Uint32Array;
  /** Row ids, grouped by feature, ascending within a feature. */
  readonly colRows: Uint32Array;
}

/** The shared buffers of a dataset, as posted to a worker. */
export interface SparseDatasetBuffers {
  numRows: number;
  numFeatures: number;
  rowPtr: SharedArrayBuffer;
  ids: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  colPtr?: SharedArrayBuffer;
  colRows?: SharedArrayBuffer;
}

/** Allocates a typed array over a new `SharedArrayBuffer`. */
function sharedUint32(length: number): Uint32Array {
  return new Uint32Array(new SharedArrayBuffer(length * 4));
}

/**
 * A read-only sparse binary dataset. Build one with {@linkcode SparseDatasetBuilder} or
 * {@linkcode SparseDataset.fromRows}.
 */
export class SparseDataset {
  /** Number of rows (reviews). */
  readonly numRows: number;
  /** Number of features (vocabulary size); every id is below it. */
  readonly numFeatures: number;
  /** `rowPtr[r]..rowPtr[r+1]` is the range of `ids` holding row `r`; length `numRows + 1`. */
  readonly rowPtr: Uint32Array;
  /** Feature ids of all rows, ascending within a row. */
  readonly ids: Uint32Array;
  /** Label of each row: 1 = positive, 0 = negative. */
  readonly labels: Uint8Array;
  #columns: ColumnIndex | undefined;

  /**
   * Wraps existing arrays (normally shared); see {@linkcode SparseDatasetBuilder} to build one.
   *
   * @param numFeatures Vocabulary size.
   * @param rowPtr Row pointers, length rows + 1.
   * @param ids Feature ids.
   * @param labels 0/1 labels, one per row.
   * @param columns An already built column index, if any.
   */
  constructor(
    numFeatures: number,
    rowPtr: Uint32Array,
    ids: Uint32Array,
    labels: Uint8Array,
    columns?: ColumnIndex,
  ) {
    if (rowPtr.length !== labels.length + 1) {
      throw new RangeError(`rowPtr has ${rowPtr.length} entries for ${labels.length} labels`);
    }
    this.numRows = labels.length;
    this.numFeatures = numFeatures;
    this.rowPtr = rowPtr;
    this.ids = ids;
    this.labels = labels;
    this.#columns = columns;
  }

  /** Total number of stored ids (non-zeros). */
  get nnz(): number {
    return this.rowPtr[this.numRows]!;
  }

  /** The ids of row `r` (a view, not a copy). */
  row(r: number): Uint32Array {
    return this.ids.subarray(this.rowPtr[r]!, this.rowPtr[r + 1]!);
  }

  /** Number of positive rows. */
  countPositive(): number {
    let positives = 0;
    for (let r = 0; r < this.numRows; r++) positives += this.labels[r]!;
    return positives;
  }

  /**
   * The word → reviews index, built on first use (two passes over the ids, one shared allocation of the
   * same size as `ids`) and kept.
   */
  columns(): ColumnIndex {
    if (this.#columns) return this.#columns;
    const colPtr = sharedUint32(this.numFeatures + 1);
    const { ids, rowPtr, numRows, numFeatures } = this;
    for (let k = 0; k < ids.length; k++) colPtr[ids[k]! + 1]!++;
    for (let f = 0; f < numFeatures; f++) colPtr[f + 1]! += colPtr[f]!;
    const colRows = sharedUint32(this.nnz);
    // `next[f]` is where the next row of feature f goes; rows are visited in order, so each column ends
    // up ascending.
    const next = colPtr.slice(0, numFeatures);
    for (let r = 0; r < numRows; r++) {
      for (let k = rowPtr[r]!, end = rowPtr[r + 1]!; k < end; k++) colRows[next[ids[k]!]!++] = r;
    }
    this.#columns = { colPtr, colRows };
    return this.#columns;
  }

  /** The buffers to post to a worker; call {@linkcode columns} first to include the column index. */
  buffers(): SparseDatasetBuffers {
    const shared = (a: ArrayBufferView): SharedArrayBuffer => {
      if (!(a.buffer instanceof SharedArrayBuffer)) {
        throw new TypeError(
          "the dataset is not backed by SharedArrayBuffers; build it with SparseDatasetBuilder",
        );
      }
      return a.buffer;
    };
    return {
      numRows: this.numRows,
      numFeatures: this.numFeatures,
      rowPtr: shared(this.rowPtr),
      ids: shared(this.ids),
      labels: shared(this.labels),
      colPtr: this.#columns ? shared(this.#columns.colPtr) : undefined,
      colRows: this.#columns ? shared(this.#columns.colRows) : undefined,
    };
  }

  /** Rebuilds a dataset from {@linkcode buffers} (in a worker); nothing is copied. */
  static fromBuffers(buffers: SparseDatasetBuffers): SparseDataset {
    const columns = buffers.colPtr && buffers.colRows
      ? { colPtr: new Uint32Array(buffers.colPtr), colRows: new Uint32Array(buffers.colRows) }
      : undefined;
    return new SparseDataset(
      buffers.numFeatures,
      new Uint32Array(buffers.rowPtr),
      new Uint32Array(buffers.ids),
      new Uint8Array(buffers.labels),
      columns,
    );
  }

  /**
   * Builds a dataset from in-memory rows; for tests and small data.
   *
   * @param numFeatures Vocabulary size.
   * @param rows Sorted unique ids per row.
   * @param labels 0/1 per row.
   * @returns The dataset.
   *
   * @example Usage
   * ```ts
   * import { SparseDataset } from "./sparse_dataset.ts";
   * const data = SparseDataset.fromRows(3, [[0, 2], [1]], [1, 0]);
   * console.assert(data.nnz === 3);
   * ```
   */
  static fromRows(numFeatures: number, rows: ArrayLike<number>[], labels: ArrayLike<number>): SparseDataset {
    if (rows.length !== labels.length) {
      throw new RangeError(`got ${rows.length} rows but ${labels.length} labels`);
    }
    const builder = new SparseDatasetBuilder(numFeatures);
    for (let r = 0; r < rows.length; r++) builder.addRow(rows[r]!, labels[r]!);
    return builder.finish();
  }
}

/**
 * Builds a {@linkcode SparseDataset} one row at a time. Ids are appended to fixed-size chunks (no
 * reallocation of what is stored), and {@linkcode finish} copies them once into the shared buffers, so the
 * peak is about twice the final ids size, briefly.
 *
 * @example Usage
 * ```ts
 * import { SparseDatasetBuilder } from "./sparse_dataset.ts";
 * const builder = new SparseDatasetBuilder(4);
 * builder.addRow(new Uint32Array([0, 3]), 1);
 * builder.addRow(new Uint32Array([2]), 0);
 * const data = builder.finish();
 * console.assert(data.numRows === 2);
 * ```
 */
export class SparseDatasetBuilder {
  /** Vocabulary size; every id must be below it. */
  readonly numFeatures: number;
  #chunks: Uint32Array[] = [];
  #chunkFill = CHUNK_LENGTH; // forces a first chunk
  #rowPtr = new Float64Array(1024);
  #labels = new Uint8Array(1024);
  #rows = 0;
  #nnz = 0;
  #finished = false;

  /** @param numFeatures Vocabulary size, at least 1. */
  constructor(numFeatures: number) {
    if (!Number.isInteger(numFeatures) || numFeatures < 1 || numFeatures > 0xffffffff) {
      throw new RangeError(`numFeatures must be an integer between 1 and 2^32-1, got ${numFeatures}`);
    }
    this.numFeatures = numFeatures;
  }

  /** Rows added so far. */
  get rows(): number {
    return this.#rows;
  }

  /** Ids added so far. */
  get nnz(): number {
    return this.#nnz;
  }

  /**
   * Appends a row.
   *
   * @param ids The row's feature ids, strictly ascending, each below `numFeatures` (what
   *   `Vectorizer.transform` returns). An empty row is allowed (a review with no known word).
   * @param label 1 for positive, 0 for negative.
   */
  addRow(ids: ArrayLike<number>, label: number): void {
    if (this.#finished) throw new Error("SparseDatasetBuilder.addRow() called after finish()");
    if (label !== 0 && label !== 1) throw new RangeError(`label must be 0 or 1, got ${label}`);
    if (this.#nnz + ids.length > MAX_NNZ) {
      throw new RangeError(
        `the dataset exceeds ${MAX_NNZ} ids; train on fewer reviews or a smaller vocabulary`,
      );
    }
    let previous = -1;
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k]!;
      if (!(id > previous && id < this.numFeatures && Number.isInteger(id))) {
        throw new RangeError(
          `row ${this.#rows}: ids must be ascending, unique integers below ${this.numFeatures}, got ${id} after ${previous}`,
        );
      }
      previous = id;
      if (this.#chunkFill === CHUNK_LENGTH) {
        this.#chunks.push(new Uint32Array(CHUNK_LENGTH));
        this.#chunkFill = 0;
      }
      this.#chunks[this.#chunks.length - 1]![this.#chunkFill++] = id;
    }
    if (this.#rows + 1 >= this.#rowPtr.length) {
      const rowPtr = new Float64Array(this.#rowPtr.length * 2);
      rowPtr.set(this.#rowPtr);
      this.#rowPtr = rowPtr;
      const labels = new Uint8Array(this.#labels.length * 2);
      labels.set(this.#labels);
      this.#labels = labels;
    }
    this.#labels[this.#rows] = label;
    this.#nnz += ids.length;
    this.#rows += 1;
    this.#rowPtr[this.#rows] = this.#nnz;
  }

  /** Copies everything into shared buffers and returns the dataset; the builder cannot be reused. */
  finish(): SparseDataset {
    if (this.#finished) throw new Error("SparseDatasetBuilder.finish() called twice");
    this.#finished = true;
    const ids = sharedUint32(this.#nnz);
    let offset = 0;
    for (const chunk of this.#chunks) {
      const take = Math.min(CHUNK_LENGTH, this.#nnz - offset);
      ids.set(take === CHUNK_LENGTH ? chunk : chunk.subarray(0, take), offset);
      offset += take;
    }
    this.#chunks = [];
    const rowPtr = sharedUint32(this.#rows + 1);
    for (let r = 0; r <= this.#rows; r++) rowPtr[r] = this.#rowPtr[r]!;
    const labels = new Uint8Array(new SharedArrayBuffer(this.#rows));
    labels.set(this.#labels.subarray(0, this.#rows));
    this.#rowPtr = new Float64Array(0);
    this.#labels = new Uint8Array(0);
    return new SparseDataset(this.numFeatures, rowPtr, ids, labels);
  }
}
