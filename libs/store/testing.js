// Runtime entry of @flywheel/store/testing for compiled code (the demo scripts): the build's output of the test helpers.
module.exports = require('../../dist/libs/store/src/store.testing.js');
