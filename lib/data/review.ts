/**
 * The review record every stage passes around, and the dataset's label map.
 *
 * The Kaggle dataset `kritanjalijain/amazon-reviews` (Zhang, Zhao & LeCun's Amazon Review Polarity) stores
 * rows as `polarity,title,text` with no header, polarity 1 = negative and 2 = positive.
 *
 * @module
 */

/** The dataset's label: 1 = negative, 2 = positive. */
export type Polarity = 1 | 2;

/** Human-readable label of a polarity. */
export type SentimentLabel = "negative" | "positive";

/** One review as stored in the dataset. */
export interface Review {
  polarity: Polarity;
  title: string;
  text: string;
}

/** The label map saved with every model, so predictions never depend on code defaults. */
export const LABEL_MAP: Readonly<Record<Polarity, SentimentLabel>> = Object.freeze({
  1: "negative",
  2: "positive",
});
