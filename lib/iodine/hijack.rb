# frozen_string_literal: true

module Iodine
  module Base
    # `env["rack.hijack"]`: one object shared by every request.
    module Hijack
      # Takes the socket of the request this thread is running, as an IO (also stored in
      # `env["rack.hijack_io"]`). Interrupts (`Thread#raise`, `Timeout`, `Thread#kill`) are
      # deferred while the IO is made, so one that arrives meanwhile is delivered after the
      # IO owns the descriptor and sits in the env, never between the two (where the
      # descriptor could be closed twice).
      def self.call
        Thread.handle_interrupt(Object => :never) { __take }
      end
    end
  end
end
