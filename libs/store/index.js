// Runtime entry of @flywheel/store for compiled code (node_modules/@flywheel/store links here): the build's output.
module.exports = require('../../dist/libs/store/src/index.js');
