package sharedlist

// BlockIndexKey is blockIndexKey, for the tests of package sharedlist_test.
const BlockIndexKey = blockIndexKey
