"""Names of the slate policies `recrl slate` and slate sweeps run (design.md §5.5), kept in a
module of its own so that the CLI lists them without importing torch."""

POLICIES = {
    "cdqn": "cascading Q-networks on the learned reward (GAN-CDQN)",
    "rwd1": "cascading Q-networks on +1 click / -1 no click (GAN-RWD1)",
    "gdqn": "additive Q(s, A) = sum_j q(s, a_j) on the learned reward (GAN-GDQN)",
    "greedy": "the k items of highest utility under the user model (GAN-Greedy)",
    "random": "k random candidates",
    "offline": "cascading Q-networks fitted on the logged page views alone (DQN-Off)",
}
"""Policy name -> what it is (``recrl slate --help`` lists them). Trained: ``cdqn``, ``rwd1``,
``gdqn`` (with RLlib, against the training users' simulator) and ``offline`` (on the logged
views); references: ``greedy`` and ``random``."""
