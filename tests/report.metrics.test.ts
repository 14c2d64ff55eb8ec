import { describe, expect, it } from 'vitest';
import {
  averageRecommendationPopularity, catalogCoverage, exposureEntropy, exposureToWatchRatio, giniIndex, groupSpread, jaccard,
  longTailShare, meanPairwiseJaccard, pearson, popularityLift, shortHead,
} from '../lib/report/metrics.ts';

// Every expected value below is worked out by hand in the comment beside it.
const pop = new Map([['a', 10], ['b', 2], ['c', 0], ['d', 5], ['e', 5]]);

describe('exposure metrics', () => {
  it('Gini index counts unshown movies as zeros', () => {
    // sorted [0,1,2,3], n = 4, C = 6: (−3·0 − 1·1 + 1·2 + 3·3) / (4·6) = 10/24
    expect(giniIndex([1, 2, 3], 4)).toBeCloseTo(10 / 24, 12);
    expect(giniIndex([3, 1, 2], 4)).toBeCloseTo(10 / 24, 12);
    // equal exposure: 0; one movie takes all of 4: 3·7/(4·7) = 0.75
    expect(giniIndex([5, 5, 5, 5], 4)).toBe(0);
    expect(giniIndex([7], 4)).toBeCloseTo(0.75, 12);
    // without a catalogue size only the shown movies count: [1,3] → (−1·1 + 1·3)/(2·4) = 0.25
    expect(giniIndex([1, 3])).toBeCloseTo(0.25, 12);
    expect(giniIndex([], 10)).toBeNull();
  });

  it('coverage is distinct shown over the catalogue', () => {
    expect(catalogCoverage(3, 12)).toBe(0.25);
    expect(catalogCoverage(3, 0)).toBeNull();
  });

  it('entropy in nats and normalised by ln n', () => {
    // p = ¼, ¼, ½: H = ½ ln 4 + ½ ln 2 = 1.5 ln 2; over n = 4: 1.5 ln 2 / ln 4 = 0.75
    const e = exposureEntropy([1, 1, 2], 4)!;
    expect(e.entropy).toBeCloseTo(1.5 * Math.log(2), 12);
    expect(e.normalised).toBeCloseTo(0.75, 12);
    expect(exposureEntropy([0, 0])).toBeNull();
  });

  it('ARP averages each list\'s mean popularity', () => {
    // [a,b]: (10+2)/2 = 6; [c]: 0; mean 3 (an empty list is not a list)
    expect(averageRecommendationPopularity([['a', 'b'], ['c'], []], pop)).toBe(3);
    expect(averageRecommendationPopularity([], pop)).toBeNull();
  });

  it('short head is the top share of the catalogue, ties by id; long-tail share is per list', () => {
    const catalog = ['a', 'b', 'c', 'd', 'e'];
    expect([...shortHead(pop, catalog)]).toEqual(['a']); // ⌈0.2·5⌉ = 1
    expect([...shortHead(pop, catalog, 0.4)]).toEqual(['a', 'd']); // d and e tie at 5: d first
    // [a,b]: ½ in the tail; [d,e]: all; mean 0.75
    expect(longTailShare([['a', 'b'], ['d', 'e']], new Set(['a']))).toBe(0.75);
  });

  it('popularity lift is ΔGAP over users with both a profile and lists', () => {
    // u1: profile b (2), recommended a (10); u2: profile d (5), recommended a,b (6); u3 has no profile.
    // GAP_p = 3.5, GAP_r = 8, lift = 4.5 / 3.5
    const r = popularityLift([
      { profile: ['b'], recommended: ['a'] },
      { profile: ['d'], recommended: ['a', 'b'] },
      { profile: [], recommended: ['a'] },
    ], pop)!;
    expect(r.users).toBe(2);
    expect(r.gapProfile).toBe(3.5);
    expect(r.gapRecommended).toBe(8);
    expect(r.lift).toBeCloseTo(4.5 / 3.5, 12);
  });
});

describe('group and loop measures', () => {
  it('group spread is max − min and min/max, ignoring groups without a value', () => {
    const s = groupSpread([{ group: 'F', value: 0.3 }, { group: 'M', value: 0.2 }, { group: 'X', value: null }])!;
    expect(s.spread).toBeCloseTo(0.1, 12);
    expect(s.ratio).toBeCloseTo(2 / 3, 12);
    expect([s.min, s.max]).toEqual(['M', 'F']);
    expect(groupSpread([{ group: 'X', value: null }])).toBeNull();
  });

  it('exposure share against watch share', () => {
    // 30 % of exposures, 10 % of watches: shown 3× as often as chosen
    expect(exposureToWatchRatio(30, 100, 10, 100)).toBeCloseTo(3, 12);
    expect(exposureToWatchRatio(30, 100, 0, 100)).toBeNull();
  });

  it('Jaccard and its mean over pairs', () => {
    expect(jaccard(new Set(['a', 'b']), new Set(['b', 'c']))).toBeCloseTo(1 / 3, 12);
    // pairs: {a,b}–{b,c} ⅓, {a,b}–{a,b} 1, {b,c}–{a,b} ⅓ → 5/9
    expect(meanPairwiseJaccard([new Set(['a', 'b']), new Set(['b', 'c']), new Set(['a', 'b'])])).toBeCloseTo(5 / 9, 12);
    expect(meanPairwiseJaccard([new Set(['a'])])).toBeNull();
  });

  it('Pearson correlation', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    // [1,3,1]: dy = −⅔, ⁴⁄₃, −⅔ against dx = −1, 0, 1: Σdxdy = 0
    expect(pearson([1, 2, 3], [1, 3, 1])).toBeCloseTo(0, 12);
    // [1,1,3]: dy = −⅔, −⅔, ⁴⁄₃: Σdxdy = 2, Σdx² = 2, Σdy² = 24/9 → 2/√(48/9) = 1/√(4/3)
    expect(pearson([1, 2, 3], [1, 1, 3])).toBeCloseTo(1 / Math.sqrt(4 / 3), 12);
    expect(pearson([1, 1], [1, 2])).toBeNull();
  });
});
