// Mocha's spec reporter, plus one plain closing line ("N passed, N failed")
// that CI systems read without knowing mocha.
'use strict'
const Mocha = require('mocha')
const { Spec } = Mocha.reporters
const { EVENT_RUN_END } = Mocha.Runner.constants

class SpecWithSummary extends Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats
      const skipped = s.pending ? `, ${s.pending} skipped` : ''
      process.stdout.write(`tests: ${s.passes} passed, ${s.failures} failed${skipped}\n`)
    })
  }
}
module.exports = SpecWithSummary
