/**
 * The request bodies of the API's load tools (tools/api_load.ts, tools/bench_api.ts): a dozen reviews in the
 * API's `{title, message}` shape.
 *
 * @module
 */

/** Review texts of typical length (about 200 characters) and mixed sentiment; rotating them keeps caches honest. */
export const SAMPLE_REVIEWS: readonly { title: string; message: string }[] = Object.freeze([
  {
    title: "Works great, battery lasts all week",
    message:
      "I bought this to replace an older model and it is better in every way. Setup took five minutes, the battery lasts about a week with daily use, and the sound is clear. The only thing I would change is the short charging cable.",
  },
  {
    title: "Stopped working after two weeks",
    message:
      "It worked fine at first but after two weeks it would not turn on anymore. I tried charging it overnight and resetting it as the manual says, nothing. Returned it for a refund. Disappointed because the reviews looked good.",
  },
  {
    title: "Good book, slow start",
    message:
      "The first hundred pages drag a bit and I almost gave up, but the second half makes up for it. The characters are believable and the ending surprised me. Recommended if you are patient.",
  },
  {
    title: "Cheap plastic",
    message:
      "Feels flimsy and the lid cracked the first time I dropped it from the counter. For this price I expected better. Not buying this brand again.",
  },
  {
    title: "Perfect gift",
    message:
      "Bought this for my daughter's birthday and she loves it. Nicely packaged, arrived a day early, and the colors are exactly like the pictures.",
  },
  {
    title: "Not what I expected",
    message:
      "The description says stainless steel but the inside is coated aluminium. It does keep coffee warm for a couple of hours, but it leaks if you tip it over, so it stays at home.",
  },
  {
    title: "Best purchase this year",
    message:
      "I use it every single day. It is quiet, easy to clean, and the results are consistent. Customer service answered my question within an hour. Five stars without hesitation.",
  },
  {
    title: "Waste of money",
    message:
      "The app keeps disconnecting, the firmware update failed twice and support never answered my emails. Save your money and buy something else.",
  },
  {
    title: "Does the job",
    message:
      "Nothing fancy, but it does what it says. Assembly instructions were clear and all screws were included. Would buy again at this price.",
  },
  {
    title: "Terrible sound quality",
    message:
      "The bass is muddy and there is a constant hiss even at low volume. I compared it with my old speaker and the difference is huge. Sending it back.",
  },
  {
    title: "",
    message:
      "Great fit, comfortable for long walks and the material breathes well. I ordered my usual size and it was right. Already ordered a second pair in another color.",
  },
  {
    title: "Arrived broken",
    message:
      "The box was crushed and the glass was broken in several pieces. The replacement arrived in the same condition. I gave up.",
  },
]);
