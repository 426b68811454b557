// Runtime entry of @flywheel/train for compiled code (node_modules/@flywheel/train links here): the build's output.
module.exports = require('../../dist/libs/train/src/index.js');
