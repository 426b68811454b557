/**
 * The RLHF demo's synthetic preference set, a pure function of its size (no RNG, so every run sees the same
 * data). The preference, judged by a rule: of two tellings of the same story, the one that ENDS HAPPILY is
 * chosen (its last sentence is one of the happy endings below), the one that ends sadly is rejected; everything
 * before the ending is identical. Prompts name a child and an animal ("Tell me a story about Lily and the dog."),
 * 80 distinct prompts, so PPO has prompts to train on and the eval has prompts it never saw.
 */
const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam', 'Lucy', 'Tim'];
const ANIMALS = ['dog', 'cat', 'bird', 'fish', 'frog', 'bunny', 'duck', 'bear'];
const PLACES = ['the park', 'the garden', 'the forest', 'the beach', 'the house'];
const HAPPY = ['They lived happily ever after.', 'Everyone was happy and they smiled all day.', 'They hugged and played and were very happy.'];
const SAD = ['They were sad forever.', 'Everyone cried and felt very sad.', 'The toy broke and they cried all day.'];

export const PREFERENCE_RULE = 'a story that ends happily beats the same story ending sadly';

export interface PreferenceLine {
  prompt: { role: 'user'; content: string }[];
  chosen: { role: 'assistant'; content: string }[];
  rejected: { role: 'assistant'; content: string }[];
}

/** n pairs (the admin export's preference format); pair i depends on i only. */
export function happyEndingPreferences(n: number): PreferenceLine[] {
  return Array.from({ length: n }, (_, i) => {
    const name = NAMES[i % NAMES.length];
    const animal = ANIMALS[Math.floor(i / NAMES.length) % ANIMALS.length];
    const place = PLACES[(i * 7 + Math.floor(i / 80)) % PLACES.length];
    const body = `${name} had a ${animal}. One day, ${name} and the ${animal} went to ${place}.`;
    return {
      prompt: [{ role: 'user' as const, content: `Tell me a story about ${name} and the ${animal}.` }],
      chosen: [{ role: 'assistant' as const, content: `${body} ${HAPPY[i % HAPPY.length]}` }],
      rejected: [{ role: 'assistant' as const, content: `${body} ${SAD[(i * 5 + 1) % SAD.length]}` }],
    };
  });
}
