# frozen_string_literal: true

module Iodine
  class << self
    # Replaces `Rack::Utils.unescape`, `.unescape_path`, `.rfc2109` and `.rfc2822` (and the
    # private instance copies that `include Rack::Utils` gives) with iodine's Rust versions,
    # the methods of Iodine::Base::MonkeyPatch::RackUtils.
    #
    # Loads rack first if it is installed. Results equal Rack's for valid input; the
    # differences: a malformed `%` escape raises RuntimeError (Rack: ArgumentError, and
    # `unescape_path` kept it as is), the argument must be a String (TypeError), and the dates
    # are always written in UTC (Rack writes the Time's own zone).
    #
    # Returns `Rack::Utils`, or nil when rack is not available (nothing is patched).
    def patch_rack
      begin
        require "rack/utils" unless defined?(::Rack::Utils)
      rescue LoadError
        return nil
      end
      return nil unless defined?(::Rack::Utils)

      Base::MonkeyPatch::RackUtils.patch(::Rack::Utils)
    end
  end

  module Base
    # Rust implementations shaped like Rack's (defined by the extension).
    module MonkeyPatch
      # `unescape(str, encoding = nil)`, `unescape_path(str)`, `rfc2109(time)`, `rfc2822(time)`.
      module RackUtils
        # The methods `patch` copies.
        METHODS = %i[unescape unescape_path rfc2109 rfc2822].freeze

        # Copies METHODS into `target` (a module_function module such as Rack::Utils), both
        # as module methods and as private instance methods. Returns `target`.
        def self.patch(target)
          METHODS.each do |name|
            implementation = instance_method(name)
            target.define_singleton_method(name, implementation)
            target.send(:define_method, name, implementation)
            target.send(:private, name)
          end
          target
        end
      end
    end
  end
end
