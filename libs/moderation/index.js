// Runtime entry of @flywheel/moderation for compiled code (node_modules/@flywheel/moderation links here): the build's output.
module.exports = require('../../dist/libs/moderation/src/index.js');
